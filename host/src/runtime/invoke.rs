//! One invocation: a fresh store under the plugin's budget, the call, and
//! the mapping of whatever stopped it to a typed outcome (the types are in
//! `outcome`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Resource;
use wasmtime::{CallHook, Store, Trap, UpdateDeadline};

use super::content::ContentSource;
use super::hooks::UploadInfo;
use super::host::{ContentHandle, HostState, Usage};
use super::load::{HookKind, Plugin};
use super::outcome::{
    CrashKind, GuestFault, HookOutput, HostFault, Invocation, InvokeError, UsageReport,
};
use super::output;
use crate::bindings::types;
use crate::budget::{Limit, OverBudget};

/// Slack on top of the budget's timeout for the outer guard: the epoch
/// deadline and host-call deadlines fire first; this only catches anything
/// that escapes both.
const OUTER_GRACE: Duration = Duration::from_millis(50);

impl Plugin {
    /// Runs the plugin once on `content`, in a fresh instance.
    #[tracing::instrument(name = "plugin", skip_all, fields(plugin = %self.name, upload = %upload.id))]
    pub async fn invoke(&self, upload: &UploadInfo, content: Arc<dyn ContentSource>) -> Invocation {
        let started = Instant::now();
        let timeout = Duration::from_millis(self.budget.timeout_ms);
        // Declared before the store so the slot is released after the
        // store (and its pooled instance) is dropped.
        // A free slot is taken at once, without a timer; only a full pool
        // is waited for, up to the budget's timeout.
        let _slot = match self.slots.try_acquire() {
            Ok(slot) => slot,
            Err(tokio::sync::TryAcquireError::Closed) => {
                return self.not_run("the instance pool is closed", started);
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match tokio::time::timeout(timeout, self.slots.acquire()).await {
                    Ok(Ok(slot)) => slot,
                    Ok(Err(tokio::sync::AcquireError { .. })) => {
                        return self.not_run("the instance pool is closed", started);
                    }
                    Err(_elapsed) => {
                        return self.not_run(
                            "no free instance slot within its timeout (runtime.max_instances)",
                            started,
                        );
                    }
                }
            }
        };
        let size = content.size();
        let state = HostState::new(
            Arc::clone(&self.name),
            upload.id.clone(),
            self.budget,
            self.cache.clone(),
            started,
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state);
        // wasmtime bounds what it copies out of the guest in one transfer by
        // the store's "hostcall fuel". Host-call arguments are read lazily
        // and charged before any copy (see `host`), so while the guest runs
        // the allowance is unlimited and a refused call is still charged;
        // once it returns, the allowance is what its budget lets the result
        // be, so an oversized result is refused mid-lift (see `output`).
        let result_allowance = output::copy_allowance(&self.budget);
        store.call_hook(move |mut ctx, hook| {
            ctx.set_hostcall_fuel(match hook {
                CallHook::ReturningFromWasm => result_allowance,
                CallHook::CallingWasm | CallHook::CallingHost | CallHook::ReturningFromHost => {
                    usize::MAX
                }
            });
            Ok(())
        });
        // Fails only on an engine that does not meter fuel, which the
        // runtime that loaded this plugin would have said; never run a
        // plugin without its fuel limit.
        if self.fuel_metering
            && let Err(e) = store.set_fuel(self.budget.fuel)
        {
            let fault = HostFault::caused_by("cannot set the fuel budget", e);
            return self.not_run(&fault.reason(), started);
        }
        // Every epoch tick, running wasm yields to the executor (so a busy
        // plugin never holds a runtime thread for more than a tick) and is
        // interrupted once its deadline has passed.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });

        let record = types::Upload {
            id: upload.id.clone(),
            client: upload.client.clone(),
            filename: upload.filename.clone(),
            content_type: upload.content_type.clone(),
            size,
            metadata: upload
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let call = self.call(&mut store, record, content, upload.sha256.clone());
        let raw = match tokio::time::timeout(timeout + OUTER_GRACE, call).await {
            Ok(raw) => raw,
            Err(_) => Err(wasmtime::Error::new(OverBudget {
                limit: Limit::Timeout,
                used: started.elapsed().as_millis() as u64,
                allowed: self.budget.timeout_ms,
            })),
        };

        // `get_fuel` fails only where fuel is not metered, which
        // `fuel_metering` rules out (and `set_fuel` above checked).
        let fuel_used = self.fuel_metering.then(|| {
            self.budget
                .fuel
                .saturating_sub(store.get_fuel().unwrap_or(0))
        });
        let outcome = match raw {
            Ok(Ok(output)) => self.check_output(output),
            Ok(Err(message)) => Err(InvokeError::Failed {
                plugin: self.name.to_string(),
                message,
            }),
            Err(trap) => Err(self.classify(&trap, store.data(), started)),
        };
        if let Err(err) = &outcome {
            tracing::warn!(error = %err, "plugin invocation failed");
        }
        let report = UsageReport {
            fuel_used,
            usage: store.data().usage,
            wall_time_ms: started.elapsed().as_secs_f64() * 1000.0,
            budget: self.budget,
        };
        Invocation { outcome, report }
    }

    /// An invocation that could not start, for a reason of the host's own.
    fn not_run(&self, reason: &str, started: Instant) -> Invocation {
        Invocation {
            outcome: Err(InvokeError::Host {
                plugin: self.name.to_string(),
                reason: reason.to_string(),
            }),
            report: UsageReport {
                fuel_used: None,
                usage: Usage::default(),
                wall_time_ms: started.elapsed().as_secs_f64() * 1000.0,
                budget: self.budget,
            },
        }
    }

    /// Instantiates and calls the hook, then reads its result under the
    /// budget. The outer error is a trap; the inner one is the plugin's own
    /// `plugin-error`.
    async fn call(
        &self,
        store: &mut Store<HostState>,
        upload: types::Upload,
        content: Arc<dyn ContentSource>,
        sha256: String,
    ) -> wasmtime::Result<Result<HookOutput, String>> {
        let handle = store
            .data_mut()
            .table
            .push(ContentHandle {
                source: content,
                sha256: (!sha256.is_empty()).then_some(sha256),
            })
            .map_err(|e| HostFault::caused_by("content handle", e))?;
        let instance = self.pre.instantiate_async(&mut *store).await.map_err(|e| {
            // The limiter's stops and whatever happened while its start
            // functions ran (traps, bad host calls: the error carries a wasm
            // backtrace) are the plugin's; anything else (an exhausted
            // pool) is the host's.
            let guest = e.is::<OverBudget>()
                || e.is::<Trap>()
                || e.is::<GuestFault>()
                || e.is::<wasmtime::WasmBacktrace>();
            if guest {
                e
            } else {
                HostFault::caused_by("cannot instantiate", e).into()
            }
        })?;
        Ok(match self.info.world {
            HookKind::Processor => {
                match self
                    .call_hook::<types::Verdict>(store, &instance, &upload, handle)
                    .await?
                {
                    Ok(verdict) => Ok(HookOutput::Verdict(output::verdict(
                        store.data_mut(),
                        verdict,
                    )?)),
                    Err(message) => Err(message),
                }
            }
            HookKind::Extension => {
                match self
                    .call_hook::<Vec<types::Derived>>(store, &instance, &upload, handle)
                    .await?
                {
                    Ok(items) => Ok(HookOutput::Derived(output::derived(
                        store.data_mut(),
                        items,
                    )?)),
                    Err(message) => Err(message),
                }
            }
        })
    }

    /// Calls the hook, whose result on success is `R`; its `plugin-error`
    /// becomes one bounded line.
    async fn call_hook<R>(
        &self,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
        upload: &types::Upload,
        handle: Resource<ContentHandle>,
    ) -> wasmtime::Result<Result<R, String>>
    where
        R: wasmtime::component::ComponentType + wasmtime::component::Lift + Send + Sync + 'static,
    {
        let func = instance
            .get_typed_func::<(&types::Upload, Resource<ContentHandle>), (Result<R, types::PluginError>,)>(
                &mut *store,
                &self.hook,
            )?;
        let (result,) = func.call_async(&mut *store, (upload, handle)).await?;
        Ok(result.map_err(output::error_message))
    }

    /// Validates names and keys of a result already read under the budget.
    fn check_output(&self, output: HookOutput) -> Result<HookOutput, InvokeError> {
        match output.check() {
            Ok(()) => Ok(output),
            Err(reason) => Err(InvokeError::InvalidOutput {
                plugin: self.name.to_string(),
                reason,
            }),
        }
    }

    fn classify(&self, trap: &wasmtime::Error, state: &HostState, started: Instant) -> InvokeError {
        let plugin = self.name.to_string();
        let over = trap
            .downcast_ref::<OverBudget>()
            .copied()
            .or(state.over_budget);
        let over = over.or_else(|| self.result_too_big(trap));
        let over = over.or_else(|| match trap.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => Some(OverBudget {
                limit: Limit::Fuel,
                used: self.budget.fuel,
                allowed: self.budget.fuel,
            }),
            Some(Trap::Interrupt) => Some(OverBudget {
                limit: Limit::Timeout,
                used: started.elapsed().as_millis() as u64,
                allowed: self.budget.timeout_ms,
            }),
            _ => None,
        });
        if let Some(OverBudget {
            limit,
            used,
            allowed,
        }) = over
        {
            return InvokeError::BudgetExceeded {
                plugin,
                limit,
                used,
                allowed,
            };
        }
        if let Some(fault) = trap.downcast_ref::<GuestFault>() {
            return InvokeError::Crashed {
                plugin,
                crash: fault.kind,
                detail: fault.detail.clone(),
            };
        }
        if let Some(fault) = trap.downcast_ref::<HostFault>() {
            return InvokeError::Host {
                plugin,
                reason: fault.reason(),
            };
        }
        let crash = match trap.downcast_ref::<Trap>() {
            Some(Trap::UnreachableCodeReached) if state.last_error_line.is_some() => {
                CrashKind::Panic
            }
            Some(Trap::UnreachableCodeReached) => CrashKind::Unreachable,
            Some(Trap::StackOverflow) => CrashKind::StackOverflow,
            Some(Trap::MemoryOutOfBounds) => CrashKind::MemoryOutOfBounds,
            Some(_) => CrashKind::Trap,
            // Not a trap, not the host's: wasmtime refused something the
            // guest did at the canonical-ABI boundary.
            None => abi_fault(trap),
        };
        let detail = match (crash, &state.last_error_line) {
            (CrashKind::Panic, Some(line)) => line.clone(),
            _ => match trap.downcast_ref::<Trap>() {
                Some(trap) => trap.to_string(),
                None => format!("{trap:#}"),
            },
        };
        InvokeError::Crashed {
            plugin,
            crash,
            detail,
        }
    }
}

/// wasmtime's words when a transfer passes the store's hostcall fuel.
const COPY_LIMIT_TEXT: &str = "too much data is being copied";

impl Plugin {
    /// A result bigger than `output::copy_allowance` is refused by wasmtime
    /// while lifting it (the only transfer with a finite allowance): the
    /// lift stops before the host allocates, so what it would have cost is
    /// unknown; the stop reports the allowance as used.
    fn result_too_big(&self, err: &wasmtime::Error) -> Option<OverBudget> {
        format!("{err:#}")
            .contains(COPY_LIMIT_TEXT)
            .then(|| OverBudget {
                limit: Limit::OutputBytes,
                used: output::copy_allowance(&self.budget) as u64,
                allowed: self.budget.output_bytes,
            })
    }
}

/// The kind of a canonical-ABI violation wasmtime reported as an error
/// rather than a trap. wasmtime gives these no error type, so its messages
/// are the only thing to go by; anything unrecognised is a malformed value.
fn abi_fault(err: &wasmtime::Error) -> CrashKind {
    let text = format!("{err:#}");
    if text.contains("handle") || text.contains("borrow") || text.contains("resource") {
        CrashKind::BadHandle
    } else {
        CrashKind::InvalidResult
    }
}
