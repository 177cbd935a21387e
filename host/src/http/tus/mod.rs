//! Resumable uploads over tus 1.0.0 (<https://tus.io/protocols/resumable-upload>):
//! core, creation, creation-with-upload, creation-defer-length,
//! termination, checksum, expiration and concatenation, under `/v1/tus`.
//! Only HTTP lives here (`headers.rs` parses the tus headers);
//! [`crate::resumable`] does the work.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod headers;

use self::headers::{
    BASE, EXTENSIONS, METHOD_OVERRIDE, OFFSET_STREAM, TUS_RESUMABLE, TUS_VERSION, UPLOAD_CONCAT,
    UPLOAD_DEFER_LENGTH, UPLOAD_EXPIRES, UPLOAD_LENGTH, UPLOAD_METADATA, UPLOAD_OFFSET,
    UPLOAD_RECORD, VERSION, bad, checksum, concat, is_offset_stream, number, text, value,
};
use crate::auth::Client;
use crate::http::auth::Caller;
use crate::http::extract::ApiPath;
use crate::http::{ApiError, AppState};
use crate::resumable::{ALGORITHMS, Concat, Creation, Patch, Status};
use crate::upload::Ingested;

/// The tus routes; every response carries `Tus-Resumable`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, describe))
        .routes(routes!(describe_upload, head, patch, terminate, download))
        .layer(axum::middleware::map_response(stamp))
}

/// Applies `X-HTTP-Method-Override` (for clients behind proxies that only
/// pass GET and POST) on a POST to a tus URL, before routing.
pub async fn method_override(mut request: Request) -> Request {
    if request.method() == Method::POST
        && request.uri().path().starts_with(BASE)
        && let Some(method) = request
            .headers()
            .get(METHOD_OVERRIDE)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
    {
        *request.method_mut() = method;
    }
    request
}

async fn stamp(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
    response
}

/// An API client speaking tus 1.0.0: authenticated first, then its
/// version checked (412 otherwise).
struct TusCaller(Client);

impl FromRequestParts<AppState> for TusCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(client) = Caller::from_request_parts(parts, state).await?;
        match parts.headers.get(TUS_RESUMABLE) {
            Some(v) if v == VERSION => Ok(Self(client)),
            _ => Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "unsupported_version",
                format!("send `Tus-Resumable: {VERSION}`, the version this server speaks"),
            )
            .with_header(TUS_VERSION, HeaderValue::from_static(VERSION))),
        }
    }
}

/// What this tus server supports.
#[utoipa::path(options, path = "/v1/tus", tag = "tus", responses(
    (status = 204, description = "`Tus-Version`, `Tus-Extension`, `Tus-Max-Size`, `Tus-Checksum-Algorithm`"),
))]
async fn describe(state: State<AppState>) -> Response {
    capabilities(state).await
}

/// What this tus server supports (asked at an upload's URL).
#[utoipa::path(options, path = "/v1/tus/{id}", tag = "tus", params(("id" = String, Path, description = "the upload's id (32 hex digits)")), responses(
    (status = 204, description = "`Tus-Version`, `Tus-Extension`, `Tus-Max-Size`, `Tus-Checksum-Algorithm`"),
))]
async fn describe_upload(state: State<AppState>) -> Response {
    capabilities(state).await
}

/// The OPTIONS answer.
async fn capabilities(State(state): State<AppState>) -> Response {
    let max = state.running.tus.settings().max_size;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(TUS_VERSION, HeaderValue::from_static(VERSION));
    h.insert(
        HeaderName::from_static("tus-extension"),
        HeaderValue::from_static(EXTENSIONS),
    );
    h.insert(
        HeaderName::from_static("tus-max-size"),
        HeaderValue::from(max),
    );
    h.insert(
        HeaderName::from_static("tus-checksum-algorithm"),
        HeaderValue::from_static(ALGORITHMS),
    );
    response
}

/// Creates an upload (creation, creation-with-upload, creation-defer-length,
/// concatenation).
#[utoipa::path(post, path = "/v1/tus", tag = "tus", security(("api_key" = [])),
    params(("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Length" = Option<u64>, Header, description = "the length; or `Upload-Defer-Length: 1`"),
        ("Upload-Defer-Length" = Option<String>, Header, description = "`1`: the length comes with a later PATCH"),
        ("Upload-Metadata" = Option<String>, Header, description = "`key base64,…`; `filename` and `filetype` name and type the upload"),
        ("Upload-Concat" = Option<String>, Header, description = "`partial`, or `final;URL URL…`"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1|sha256|md5 base64` of a creation-with-upload body"),
    ),
    request_body(content_type = "application/offset+octet-stream", description = "optional: the first bytes"),
    responses(
        (status = 201, description = "`Location: /v1/tus/<id>`, `Upload-Expires`; `Upload-Offset` with a body; `Upload-Record` and the record when finished at once"),
        (status = 400, description = "malformed or missing headers"), (status = 401, description = "no or unknown key"),
        (status = 412, description = "no `Tus-Resumable: 1.0.0`"), (status = 413, description = "over the size limit"),
        (status = 415, description = "a `filetype` the client may not send"), (status = 422, description = "a processor rejected it"),
        (status = 460, description = "checksum mismatch"),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Result<TusCaller, ApiError>,
    request: Request,
) -> Result<Response, ApiError> {
    let TusCaller(client) = caller?;
    let headers = request.headers();
    let length = number(headers, &UPLOAD_LENGTH)?;
    let deferred = match text(headers, &UPLOAD_DEFER_LENGTH)? {
        None => false,
        Some("1") => true,
        Some(_) => return Err(bad("Upload-Defer-Length must be 1")),
    };
    let concat = concat(text(headers, &UPLOAD_CONCAT)?)?;
    match (&concat, length, deferred) {
        (Concat::Final(_), None, false) => {}
        (Concat::Final(_), _, _) => {
            return Err(bad(
                "a final upload takes its length from its parts: no Upload-Length",
            ));
        }
        (_, Some(_), true) => {
            return Err(bad("send Upload-Length or Upload-Defer-Length, not both"));
        }
        (_, None, false) => return Err(bad("Upload-Length or Upload-Defer-Length is required")),
        _ => {}
    }
    let creation = Creation {
        length,
        // tuspy sends an empty one when there is none.
        metadata: text(headers, &UPLOAD_METADATA)?
            .filter(|m| !m.trim().is_empty())
            .map(str::to_string),
        concat,
    };
    let with_body = is_offset_stream(headers);
    let checksum = checksum(headers)?;
    let tus = &state.running.tus;
    let created = tus.create(&client, creation).await?;
    let location = format!("{BASE}/{}", created.id);
    let mut response = StatusCode::CREATED.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, value(&location));
    if let Some(expires) = created.expires {
        response
            .headers_mut()
            .insert(UPLOAD_EXPIRES, value(&httpdate::fmt_http_date(expires)));
    }
    if let Some(ingested) = created.finished {
        return Ok(finished(response, &ingested));
    }
    if !with_body {
        return Ok(response);
    }
    // creation-with-upload: the body is the first PATCH. If it fails the
    // upload exists all the same: the error says where.
    let patch = Patch {
        offset: 0,
        length: None,
        checksum,
    };
    let body = request.into_body().into_data_stream();
    match tus.append(&client, &created.id, patch, body).await {
        Ok(patched) => {
            let h = response.headers_mut();
            h.insert(UPLOAD_OFFSET, HeaderValue::from(patched.offset));
            if let Some(ingested) = patched.finished {
                return Ok(finished(response, &ingested));
            }
            Ok(response)
        }
        Err(err) => Err(ApiError::from(err).with_header(header::LOCATION, value(&location))),
    }
}

/// Where an upload stands.
#[utoipa::path(head, path = "/v1/tus/{id}", tag = "tus", security(("api_key" = [])), params(("id" = String, Path, description = "the upload's id (32 hex digits)"), ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    responses(
        (status = 200, description = "`Upload-Offset`, `Upload-Length` or `Upload-Defer-Length`, `Upload-Metadata`, `Upload-Expires`; `Upload-Record` once finished"),
        (status = 404, description = "no such upload for this client"), (status = 410, description = "expired"),
        (status = 412, description = "no `Tus-Resumable: 1.0.0`"),
    ))]
async fn head(
    State(state): State<AppState>,
    caller: Result<TusCaller, ApiError>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let TusCaller(client) = caller?;
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match state.running.tus.status(&client, &id).await? {
        Status::Unfinished {
            descriptor,
            offset,
            expires,
        } => {
            h.insert(UPLOAD_OFFSET, HeaderValue::from(offset));
            match descriptor.length {
                Some(length) => h.insert(UPLOAD_LENGTH, HeaderValue::from(length)),
                None => h.insert(UPLOAD_DEFER_LENGTH, HeaderValue::from_static("1")),
            };
            if let Some(metadata) = &descriptor.metadata {
                h.insert(UPLOAD_METADATA, value(metadata));
            }
            match &descriptor.concat {
                Concat::None => {}
                Concat::Partial => {
                    h.insert(UPLOAD_CONCAT, HeaderValue::from_static("partial"));
                }
                Concat::Final(parts) => {
                    let urls: Vec<String> = parts.iter().map(|p| format!("{BASE}/{p}")).collect();
                    h.insert(UPLOAD_CONCAT, value(&format!("final;{}", urls.join(" "))));
                }
            }
            h.insert(UPLOAD_EXPIRES, value(&httpdate::fmt_http_date(expires)));
        }
        Status::Finished(record) => {
            // What the client sent, even if a processor replaced it.
            let length = record.received_size.unwrap_or(record.size);
            h.insert(UPLOAD_OFFSET, HeaderValue::from(length));
            h.insert(UPLOAD_LENGTH, HeaderValue::from(length));
            h.insert(UPLOAD_RECORD, value(&record_url(&id)));
        }
    }
    Ok(response)
}

/// Appends bytes at `Upload-Offset`; the last ones finish the upload
/// through the pipeline.
#[utoipa::path(patch, path = "/v1/tus/{id}", tag = "tus", security(("api_key" = [])),
    params(("id" = String, Path, description = "the upload's id (32 hex digits)"), ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Offset" = u64, Header, description = "where the upload stands"),
        ("Upload-Length" = Option<u64>, Header, description = "the length, after `Upload-Defer-Length`"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1|sha256|md5 base64` of this body"),
    ),
    request_body(content_type = "application/offset+octet-stream", description = "the next bytes"),
    responses(
        (status = 204, description = "`Upload-Offset`, `Upload-Expires`; `Upload-Record: /v1/uploads/<id>` once finished"),
        (status = 400, description = "malformed headers"), (status = 403, description = "a final (concatenated) upload"),
        (status = 404, description = "no such upload for this client"), (status = 409, description = "`Upload-Offset` is not where it stands, or it is finished"),
        (status = 410, description = "expired"), (status = 412, description = "no `Tus-Resumable: 1.0.0`"),
        (status = 413, description = "past `Upload-Length` or the size limit"), (status = 415, description = "not `application/offset+octet-stream`"),
        (status = 422, description = "a processor rejected the finished upload"), (status = 423, description = "another request is writing to it"),
        (status = 460, description = "checksum mismatch: the bytes were discarded"),
    ))]
async fn patch(
    State(state): State<AppState>,
    caller: Result<TusCaller, ApiError>,
    ApiPath(id): ApiPath<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let TusCaller(client) = caller?;
    let headers = request.headers();
    if !is_offset_stream(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
            format!("a PATCH body must be `Content-Type: {OFFSET_STREAM}`"),
        ));
    }
    let Some(offset) = number(headers, &UPLOAD_OFFSET)? else {
        return Err(bad("Upload-Offset is required"));
    };
    let patch = Patch {
        offset,
        length: number(headers, &UPLOAD_LENGTH)?,
        checksum: checksum(headers)?,
    };
    let body = request.into_body().into_data_stream();
    let patched = state.running.tus.append(&client, &id, patch, body).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(UPLOAD_OFFSET, HeaderValue::from(patched.offset));
    if let Some(expires) = patched.expires {
        h.insert(UPLOAD_EXPIRES, value(&httpdate::fmt_http_date(expires)));
    }
    if patched.finished.is_some() {
        h.insert(UPLOAD_RECORD, value(&record_url(&id)));
    }
    Ok(response)
}

/// Terminates an upload (an unfinished one's bytes go; a finished one is
/// deleted).
#[utoipa::path(delete, path = "/v1/tus/{id}", tag = "tus", security(("api_key" = [])), params(("id" = String, Path, description = "the upload's id (32 hex digits)"), ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    responses((status = 204, description = "gone"), (status = 404, description = "no such upload for this client")))]
async fn terminate(
    State(state): State<AppState>,
    caller: Result<TusCaller, ApiError>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let TusCaller(client) = caller?;
    state.running.tus.terminate(&client, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A finished upload's content (as tusd serves it).
#[utoipa::path(get, path = "/v1/tus/{id}", tag = "tus", security(("api_key" = [])), params(("id" = String, Path, description = "the upload's id (32 hex digits)")),
    responses((status = 200, description = "the bytes"), (status = 404, description = "no such finished upload for this client")))]
async fn download(
    State(state): State<AppState>,
    Caller(client): Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::objects::content(&state, &client, &id, &headers).await
}

/// A response for a finished upload: where its record is, and the record.
fn finished(mut response: Response, ingested: &Ingested) -> Response {
    let id = &ingested.record.upload.id;
    let h = response.headers_mut();
    h.insert(UPLOAD_OFFSET, HeaderValue::from(ingested.received));
    h.insert(UPLOAD_RECORD, value(&record_url(id)));
    h.remove(UPLOAD_EXPIRES);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = json!(ingested.record).to_string();
    *response.body_mut() = body.into();
    response
}

fn record_url(id: &str) -> String {
    format!("/v1/uploads/{id}")
}
