//! `airlock plugin wit-docs`: the reference for plugin authors, one
//! Markdown page per interface of `airlock:plugin` plus an index, made
//! from the WIT's own doc comments (so the reference cannot say something
//! the contract does not). The pages in the repo (`wit/reference/`) are
//! kept equal to this output by a test.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wit_parser::{
    Docs, Function, FunctionKind, Handle, Interface, InterfaceId, Resolve, Type, TypeDefKind,
    TypeId, TypeOwner, WorldItem,
};

/// The WIT the binary runs.
const WIT: &str = include_str!("../../../../wit/airlock.wit");

/// `airlock plugin wit-docs` arguments.
#[derive(Args)]
pub struct WitDocsArgs {
    /// The directory to write the pages into (created if missing).
    #[arg(long, default_value = "wit-reference")]
    out: PathBuf,
}

/// Writes the pages.
pub(super) fn run(args: &WitDocsArgs) -> anyhow::Result<ExitCode> {
    let pages = pages()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (name, text) in &pages {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{} pages in {}", pages.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The pages, by file name: `README.md` (the package and its worlds) and
/// `<interface>.md` for each interface.
fn pages() -> anyhow::Result<Vec<(String, String)>> {
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("airlock.wit", WIT)
        .context("the embedded WIT does not parse")?;
    let pkg = &resolve.packages[package];
    let full = pkg.name.to_string();
    let mut pages = Vec::new();

    let mut index = format!("# `{full}`: reference\n\n");
    index.push_str(GENERATED);
    push_docs(&mut index, &pkg.docs);
    index.push_str("## Worlds\n\n");
    for &world in pkg.worlds.values() {
        let world = &resolve.worlds[world];
        let _ = writeln!(index, "### `world {}`\n", world.name);
        push_docs(&mut index, &world.docs);
        for (kind, items) in [("imports", &world.imports), ("exports", &world.exports)] {
            let names: Vec<String> = items
                .iter()
                .filter_map(|(key, item)| match item {
                    WorldItem::Interface { id, .. } => {
                        let name = resolve.name_world_key(key);
                        let short = resolve.interfaces[*id].name.clone().unwrap_or(name);
                        Some(format!("[`{short}`]({short}.md)"))
                    }
                    _ => None,
                })
                .collect();
            if !names.is_empty() {
                let _ = writeln!(index, "- {kind}: {}", names.join(", "));
            }
        }
        index.push('\n');
    }
    index.push_str("## Interfaces\n\n");
    for (name, &id) in &pkg.interfaces {
        let summary = first_line(&resolve.interfaces[id].docs);
        let _ = writeln!(index, "- [`{name}`]({name}.md): {summary}");
    }
    pages.push(("README.md".to_string(), index));

    for (name, &id) in &pkg.interfaces {
        pages.push((
            format!("{name}.md"),
            interface_page(&resolve, &full, name, id),
        ));
    }
    Ok(pages)
}

const GENERATED: &str = "<!-- Generated from wit/airlock.wit by `airlock plugin wit-docs --out \
                         wit/reference`; edit the WIT's doc comments, not this page. -->\n\n";

fn interface_page(resolve: &Resolve, package: &str, name: &str, id: InterfaceId) -> String {
    let interface = &resolve.interfaces[id];
    let owner = TypeOwner::Interface(id);
    let mut page = format!("# `interface {name}`\n\n");
    page.push_str(GENERATED);
    let _ = writeln!(page, "Package `{package}`. [All interfaces](README.md).\n");
    push_docs(&mut page, &interface.docs);
    let own: Vec<(&String, TypeId)> = interface
        .types
        .iter()
        .filter(|(_, t)| resolve.types[**t].owner == owner)
        .map(|(n, t)| (n, *t))
        .collect();
    let used: Vec<&String> = interface
        .types
        .iter()
        .filter(|(_, t)| resolve.types[**t].owner != owner)
        .map(|(n, _)| n)
        .collect();
    if !used.is_empty() {
        let list: Vec<String> = used.iter().map(|n| format!("`{n}`")).collect();
        let _ = writeln!(page, "Uses {} from [`types`](types.md).\n", list.join(", "));
    }
    if !own.is_empty() {
        page.push_str("## Types\n\n");
    }
    for (type_name, t) in own {
        type_section(&mut page, resolve, interface, type_name, t);
    }
    let free: Vec<&Function> = interface
        .functions
        .values()
        .filter(|f| matches!(f.kind, FunctionKind::Freestanding))
        .collect();
    if !free.is_empty() {
        page.push_str("## Functions\n\n");
        for function in free {
            let _ = writeln!(
                page,
                "### `{}`\n\n```wit\n{}: {}\n```\n",
                function.name,
                function.name,
                signature(resolve, function)
            );
            push_docs(&mut page, &function.docs);
        }
    }
    page
}

fn type_section(
    page: &mut String,
    resolve: &Resolve,
    interface: &Interface,
    name: &str,
    id: TypeId,
) {
    let def = &resolve.types[id];
    let (keyword, members): (&str, Vec<(String, &Docs)>) = match &def.kind {
        TypeDefKind::Record(r) => (
            "record",
            r.fields
                .iter()
                .map(|f| {
                    (
                        format!("{}: {}", f.name, type_name(resolve, &f.ty)),
                        &f.docs,
                    )
                })
                .collect(),
        ),
        TypeDefKind::Variant(v) => (
            "variant",
            v.cases
                .iter()
                .map(|c| {
                    let ty =
                        c.ty.as_ref()
                            .map(|t| format!("({})", type_name(resolve, t)));
                    (format!("{}{}", c.name, ty.unwrap_or_default()), &c.docs)
                })
                .collect(),
        ),
        TypeDefKind::Enum(e) => (
            "enum",
            e.cases.iter().map(|c| (c.name.clone(), &c.docs)).collect(),
        ),
        TypeDefKind::Flags(f) => (
            "flags",
            f.flags.iter().map(|c| (c.name.clone(), &c.docs)).collect(),
        ),
        TypeDefKind::Resource => ("resource", Vec::new()),
        _ => ("type", Vec::new()),
    };
    let _ = writeln!(page, "### `{keyword} {name}`\n");
    push_docs(page, &def.docs);
    for (member, docs) in members {
        let _ = writeln!(page, "- `{member}`{}", dash(docs));
    }
    if matches!(def.kind, TypeDefKind::Resource) {
        for function in interface.functions.values() {
            let method = match function.kind {
                FunctionKind::Method(owner)
                | FunctionKind::AsyncMethod(owner)
                | FunctionKind::Static(owner)
                | FunctionKind::AsyncStatic(owner)
                | FunctionKind::Constructor(owner) => owner == id,
                _ => false,
            };
            if !method {
                continue;
            }
            let short = function.name.rsplit('.').next().unwrap_or(&function.name);
            let _ = writeln!(
                page,
                "#### `{name}.{short}`\n\n```wit\n{short}: {}\n```\n",
                signature(resolve, function)
            );
            push_docs(page, &function.docs);
        }
    } else {
        page.push('\n');
    }
}

/// `func(a: t, …) -> r`, without the implicit `self` of a method.
fn signature(resolve: &Resolve, function: &Function) -> String {
    let params: Vec<String> = function
        .params
        .iter()
        .filter(|p| !(p.name == "self" && matches!(function.kind, FunctionKind::Method(_))))
        .map(|p| format!("{}: {}", p.name, type_name(resolve, &p.ty)))
        .collect();
    let result = function
        .result
        .as_ref()
        .map(|t| format!(" -> {}", type_name(resolve, t)))
        .unwrap_or_default();
    format!("func({}){result}", params.join(", "))
}

/// A type as WIT writes it.
fn type_name(resolve: &Resolve, ty: &Type) -> String {
    let id = match ty {
        Type::Bool => return "bool".into(),
        Type::U8 => return "u8".into(),
        Type::U16 => return "u16".into(),
        Type::U32 => return "u32".into(),
        Type::U64 => return "u64".into(),
        Type::S8 => return "s8".into(),
        Type::S16 => return "s16".into(),
        Type::S32 => return "s32".into(),
        Type::S64 => return "s64".into(),
        Type::F32 => return "f32".into(),
        Type::F64 => return "f64".into(),
        Type::Char => return "char".into(),
        Type::String => return "string".into(),
        Type::ErrorContext => return "error-context".into(),
        Type::Id(id) => *id,
    };
    let def = &resolve.types[id];
    if let Some(name) = &def.name {
        return name.clone();
    }
    let opt = |t: &Option<Type>| {
        t.as_ref()
            .map_or("_".to_string(), |t| type_name(resolve, t))
    };
    match &def.kind {
        TypeDefKind::List(t) => format!("list<{}>", type_name(resolve, t)),
        TypeDefKind::FixedLengthList(t, n) => format!("list<{}, {n}>", type_name(resolve, t)),
        TypeDefKind::Map(k, v) => {
            format!("map<{}, {}>", type_name(resolve, k), type_name(resolve, v))
        }
        TypeDefKind::Option(t) => format!("option<{}>", type_name(resolve, t)),
        TypeDefKind::Result(r) => match (&r.ok, &r.err) {
            (None, None) => "result".into(),
            (ok, None) => format!("result<{}>", opt(ok)),
            (ok, err) => format!("result<{}, {}>", opt(ok), opt(err)),
        },
        TypeDefKind::Tuple(t) => {
            let items: Vec<String> = t.types.iter().map(|t| type_name(resolve, t)).collect();
            format!("tuple<{}>", items.join(", "))
        }
        TypeDefKind::Handle(Handle::Borrow(r)) => {
            format!("borrow<{}>", type_name(resolve, &Type::Id(*r)))
        }
        TypeDefKind::Handle(Handle::Own(r)) => type_name(resolve, &Type::Id(*r)),
        TypeDefKind::Future(t) => format!("future<{}>", opt(t)),
        TypeDefKind::Stream(t) => format!("stream<{}>", opt(t)),
        TypeDefKind::Type(t) => type_name(resolve, t),
        _ => "?".into(),
    }
}

fn push_docs(page: &mut String, docs: &Docs) {
    if let Some(text) = &docs.contents {
        page.push_str(text.trim_end());
        page.push_str("\n\n");
    }
}

/// ` — first paragraph` of a member's docs, on one line.
fn dash(docs: &Docs) -> String {
    match &docs.contents {
        Some(text) => format!(
            " — {}",
            text.split("\n\n").next().unwrap_or("").replace('\n', " ")
        ),
        None => String::new(),
    }
}

fn first_line(docs: &Docs) -> String {
    docs.contents
        .as_deref()
        .and_then(|t| t.lines().next())
        .unwrap_or("")
        .to_string()
}
