//! One request's run through the plugin chains: a fresh instance per plugin,
//! shared by that request's hooks, with the failure policy applied and a
//! receipt kept per plugin.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;

use crate::bindings::{
    CacheOverride, Hook, Plugin as PluginWorld, Request, RequestAction, Response, ResponseAction,
};
use crate::failure::{describe_failure, FailureKind, FailureReason};
use crate::output::{check_request, check_response};
use crate::plugin::{FailurePolicy, Plugin};
use crate::receipt::PluginReceipt;
use crate::state::{HostState, RequestContext};

/// The plugins of each hook for one behavior, in the order they run.
#[derive(Debug, Clone, Default)]
pub struct Chains {
    /// Run before the cache lookup.
    pub on_viewer_request: Vec<Arc<Plugin>>,
    /// Run before a miss goes upstream.
    pub on_origin_request: Vec<Arc<Plugin>>,
    /// Run on the upstream's answer, before it is stored.
    pub on_origin_response: Vec<Arc<Plugin>>,
    /// Run before the response goes to the viewer.
    pub on_viewer_response: Vec<Arc<Plugin>>,
}

impl Chains {
    /// How many different plugins the chains use: the instances a request
    /// through them may hold at once.
    pub fn distinct_plugins(&self) -> usize {
        let mut seen: Vec<&Arc<Plugin>> = Vec::new();
        for plugin in self
            .on_viewer_request
            .iter()
            .chain(&self.on_origin_request)
            .chain(&self.on_origin_response)
            .chain(&self.on_viewer_response)
        {
            if !seen.iter().any(|p| Arc::ptr_eq(p, plugin)) {
                seen.push(plugin);
            }
        }
        seen.len()
    }
}

/// How a chain ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow<T> {
    /// Every plugin let the message through (possibly changed).
    Continue(T),
    /// A plugin answered (or a fail-closed plugin failed): send this
    /// response to the viewer; it is never cached.
    Respond(Response),
}

/// Outcome of the `on-origin-response` chain.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginResponseFlow {
    /// The response to store and serve, or an answer that replaces it.
    pub flow: Flow<Response>,
    /// Cache overrides from the chain; later plugins win field by field.
    pub cache: CacheOverride,
}

/// What a chain passes from plugin to plugin: a request or a response.
trait Message {
    /// The body slot.
    fn body(&mut self) -> &mut Option<Vec<u8>>;
}

impl Message for Request {
    fn body(&mut self) -> &mut Option<Vec<u8>> {
        &mut self.body
    }
}

impl Message for Response {
    fn body(&mut self) -> &mut Option<Vec<u8>> {
        &mut self.body
    }
}

/// A plugin instance of this request.
enum Slot {
    Live {
        store: Store<HostState>,
        bindings: PluginWorld,
    },
    /// Failed earlier in this request; skipped from then on.
    Failed,
    /// Could not be instantiated (the instance pool is exhausted): the host
    /// lacks capacity, so the request fails closed whatever the policy says,
    /// lest an auth or WAF plugin be skipped under load.
    NoInstance,
}

struct Entry {
    plugin: Arc<Plugin>,
    slot: Slot,
    receipt: PluginReceipt,
}

/// The plugin instances and receipts of one request. Dropping it drops the
/// instances and publishes the receipts (metrics and a debug log line).
pub struct RequestSession {
    context: Arc<RequestContext>,
    entries: Vec<Entry>,
}

impl RequestSession {
    /// Starts a request's session; instances are made on first use.
    pub fn new(context: RequestContext) -> Self {
        RequestSession {
            context: Arc::new(context),
            entries: Vec::new(),
        }
    }

    /// The request's context.
    pub fn context(&self) -> &RequestContext {
        &self.context
    }

    /// Receipts of the plugins that ran so far, in first-use order.
    pub fn receipts(&self) -> Vec<PluginReceipt> {
        self.entries.iter().map(Entry::receipt).collect()
    }

    /// Runs the `on-viewer-request` chain.
    pub fn on_viewer_request(&mut self, chain: &[Arc<Plugin>], request: Request) -> Flow<Request> {
        self.request_chain(chain, Hook::OnViewerRequest, request)
    }

    /// Runs the `on-origin-request` chain.
    pub fn on_origin_request(&mut self, chain: &[Arc<Plugin>], request: Request) -> Flow<Request> {
        self.request_chain(chain, Hook::OnOriginRequest, request)
    }

    /// Runs the `on-origin-response` chain. Plugins see `request` without its
    /// body.
    pub fn on_origin_response(
        &mut self,
        chain: &[Arc<Plugin>],
        request: &Request,
        response: Response,
    ) -> OriginResponseFlow {
        let mut cache = CacheOverride {
            cacheable: None,
            ttl_seconds: None,
        };
        let request = without_body(request);
        let flow = self.response_chain(
            chain,
            Hook::OnOriginResponse,
            response,
            |bindings, store, response, body_limit| {
                let mut outcome = bindings.call_on_origin_response(store, &request, response)?;
                if let ResponseAction::Continue(next) = &mut outcome.action {
                    // Only a response that passes the checks may change caching.
                    check_response(next, body_limit)?;
                    cache.cacheable = outcome.cache.cacheable.or(cache.cacheable);
                    cache.ttl_seconds = outcome.cache.ttl_seconds.or(cache.ttl_seconds);
                }
                Ok(outcome.action)
            },
        );
        OriginResponseFlow { flow, cache }
    }

    /// Runs the `on-viewer-response` chain. Plugins see `request` without its
    /// body.
    pub fn on_viewer_response(
        &mut self,
        chain: &[Arc<Plugin>],
        request: &Request,
        response: Response,
    ) -> Flow<Response> {
        let request = without_body(request);
        self.response_chain(
            chain,
            Hook::OnViewerResponse,
            response,
            |bindings, store, response, _| {
                bindings.call_on_viewer_response(store, &request, response)
            },
        )
    }

    fn request_chain(
        &mut self,
        chain: &[Arc<Plugin>],
        hook: Hook,
        request: Request,
    ) -> Flow<Request> {
        self.run_chain(
            chain,
            hook,
            request,
            |bindings, store, request, body_limit| {
                let action = match hook {
                    Hook::OnOriginRequest => bindings.call_on_origin_request(store, request)?,
                    _ => bindings.call_on_viewer_request(store, request)?,
                };
                Ok(match action {
                    RequestAction::Continue(mut next) => {
                        check_request(&mut next, request, body_limit)?;
                        Flow::Continue(next)
                    }
                    RequestAction::Respond(mut answer) => {
                        check_response(&mut answer, body_limit)?;
                        Flow::Respond(answer)
                    }
                })
            },
        )
    }

    fn response_chain(
        &mut self,
        chain: &[Arc<Plugin>],
        hook: Hook,
        response: Response,
        mut call: impl FnMut(
            &PluginWorld,
            &mut Store<HostState>,
            &Response,
            usize,
        ) -> wasmtime::Result<ResponseAction>,
    ) -> Flow<Response> {
        self.run_chain(
            chain,
            hook,
            response,
            |bindings, store, response, body_limit| {
                Ok(match call(bindings, store, response, body_limit)? {
                    ResponseAction::Continue(mut next) => {
                        check_response(&mut next, body_limit)?;
                        Flow::Continue(next)
                    }
                    ResponseAction::Respond(mut answer) => {
                        check_response(&mut answer, body_limit)?;
                        Flow::Respond(answer)
                    }
                })
            },
        )
    }

    /// Passes `message` through `chain`, one `call` per plugin, until one
    /// answers. A body over a plugin's limit is withheld from it and put back
    /// afterwards; a body the plugin returns as `none` is kept.
    fn run_chain<T: Message>(
        &mut self,
        chain: &[Arc<Plugin>],
        hook: Hook,
        mut message: T,
        mut call: impl FnMut(
            &PluginWorld,
            &mut Store<HostState>,
            &T,
            usize,
        ) -> wasmtime::Result<Flow<T>>,
    ) -> Flow<T> {
        for plugin in chain {
            let withheld = match message.body() {
                Some(body) if body.len() > plugin.limits.max_body_bytes => message.body().take(),
                _ => None,
            };
            let body_limit = plugin.limits.max_body_bytes;
            match self.run(plugin, hook, |bindings, store| {
                call(bindings, store, &message, body_limit)
            }) {
                Ok(Flow::Continue(mut next)) => {
                    if next.body().is_none() {
                        *next.body() = withheld.or_else(|| message.body().take());
                    }
                    message = next;
                }
                Ok(Flow::Respond(answer)) => return Flow::Respond(answer),
                Err(policy) => {
                    if withheld.is_some() {
                        *message.body() = withheld;
                    }
                    if policy == FailurePolicy::FailClosed {
                        return Flow::Respond(self.failure_response());
                    }
                }
            }
        }
        Flow::Continue(message)
    }

    /// Runs one hook of `plugin` on this request's instance of it, making the
    /// instance on first use. A failure poisons the instance for the rest of
    /// the request; the error is the policy to apply.
    fn run<R>(
        &mut self,
        plugin: &Arc<Plugin>,
        hook: Hook,
        call: impl FnOnce(&PluginWorld, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, FailurePolicy> {
        let index = match self
            .entries
            .iter()
            .position(|e| Arc::ptr_eq(&e.plugin, plugin))
        {
            Some(i) => i,
            None => {
                self.entries.push(self.instantiate(plugin, hook));
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        let (store, bindings) = match &mut entry.slot {
            Slot::Live { store, bindings } => (store, bindings),
            Slot::Failed => return Err(plugin.policy),
            Slot::NoInstance => return Err(FailurePolicy::FailClosed),
        };
        store.data_mut().hook = hook;
        store.set_epoch_deadline(plugin.engine.ticks_for(plugin.limits.hook_deadline));
        let started = Instant::now();
        let result = call(bindings, store);
        let elapsed = started.elapsed();
        entry.receipt.hooks.push((hook, elapsed));
        plugin.metrics.hook_ran(hook, elapsed);
        result.map_err(|error| {
            let reason = describe_failure(&error, plugin.limits.hook_deadline);
            entry.fail(hook, reason, &self.context.request_id);
            plugin.policy
        })
    }

    fn instantiate(&self, plugin: &Arc<Plugin>, hook: Hook) -> Entry {
        let started = Instant::now();
        let mut store = plugin.new_store(self.context.clone(), hook);
        let instantiated = plugin.pre.instantiate(&mut store);
        let mut entry = Entry {
            plugin: plugin.clone(),
            slot: Slot::Failed,
            receipt: PluginReceipt::new(plugin.identity.name.clone(), started.elapsed()),
        };
        plugin.metrics.instantiated(entry.receipt.instantiate);
        match instantiated {
            Ok(bindings) => entry.slot = Slot::Live { store, bindings },
            Err(error) => {
                let cause = describe_failure(&error, plugin.limits.hook_deadline);
                let reason = FailureReason {
                    kind: FailureKind::Instantiate,
                    message: format!("cannot instantiate: {}", cause.message),
                };
                entry.fail(hook, reason, &self.context.request_id);
                entry.slot = Slot::NoInstance;
            }
        }
        entry
    }

    /// The answer a fail-closed plugin failure produces.
    fn failure_response(&self) -> Response {
        let id = &self.context.request_id;
        Response {
            status: 503,
            headers: vec![
                ("content-type".into(), "text/plain; charset=utf-8".into()),
                ("x-request-id".into(), id.clone()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: Some(
                format!("503 Service Unavailable: a plugin failed (request id {id})\n")
                    .into_bytes(),
            ),
        }
    }
}

impl Entry {
    fn receipt(&self) -> PluginReceipt {
        let mut receipt = self.receipt.clone();
        if let Slot::Live { store, .. } = &self.slot {
            receipt.peak_memory_bytes = store.data().limiter.peak_memory;
            receipt.host_calls = store.data().host_calls;
        }
        receipt
    }

    fn fail(&mut self, hook: Hook, reason: FailureReason, request_id: &str) {
        tracing::warn!(
            plugin = %self.plugin.identity.name, hook = hook.name(), request_id, policy = ?self.plugin.policy,
            reason = reason.kind.label(), "plugin failed: {}", reason.message
        );
        self.plugin.metrics.trapped(hook, reason.kind);
        self.receipt = self.receipt();
        self.receipt.trap = Some(reason.message);
        self.slot = Slot::Failed;
    }
}

impl Drop for RequestSession {
    fn drop(&mut self) {
        for entry in &self.entries {
            let receipt = entry.receipt();
            entry.plugin.metrics.finished(&receipt);
            receipt.log(&self.context.request_id);
        }
    }
}

fn without_body(request: &Request) -> Request {
    Request {
        method: request.method.clone(),
        scheme: request.scheme.clone(),
        authority: request.authority.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        headers: request.headers.clone(),
        body: None,
    }
}
