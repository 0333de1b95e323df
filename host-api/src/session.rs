//! One request's run through the plugin chains: a fresh instance per plugin,
//! shared by that request's hooks, with the failure policy applied and a
//! receipt kept per plugin.

use std::future::Future;
use std::sync::Arc;

use wasmtime::Store;

use crate::bindings::{
    CacheOverride, Hook, Plugin as PluginWorld, Request, RequestAction, Response, ResponseAction,
};
use crate::budget::{arm, Yielding};
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

    /// The largest body a plugin of the response chains takes (0 when none
    /// runs): the edge reads responses up to this size whole, to show them
    /// to those plugins.
    pub fn response_body_limit(&self) -> usize {
        self.body_limit(Hook::OnOriginResponse)
            .max(self.body_limit(Hook::OnViewerResponse))
    }

    /// The largest body a plugin of `hook`'s chain takes (0 when none
    /// runs).
    pub fn body_limit(&self, hook: Hook) -> usize {
        let chain: &[Arc<Plugin>] = match hook {
            Hook::OnViewerRequest => &self.on_viewer_request,
            Hook::OnOriginRequest => &self.on_origin_request,
            Hook::OnOriginResponse => &self.on_origin_response,
            Hook::OnViewerResponse => &self.on_viewer_response,
            Hook::OnLaunch => &[],
        };
        (chain.iter())
            .filter(|p| p.implements(hook))
            .map(|p| p.limits.max_body_bytes)
            .max()
            .unwrap_or(0)
    }
}

/// Whether the edge holds a message's body, to show it to plugins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyAccess {
    /// The message carries its whole body in `body` (or has none).
    #[default]
    Held,
    /// The message has a body that streams past the plugins: they get
    /// `none`, `context.body-withheld` is true, and a body a plugin returns
    /// replaces the stream.
    Streamed,
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

/// What a chain passes from plugin to plugin: a request, or a response
/// with the request it answers.
trait Message: Sized + Sync {
    /// The body slot.
    fn body(&mut self) -> &mut Option<Vec<u8>>;

    /// Runs `hook` of an instance on this message and checks what it
    /// returned against `body_limit`. A continued message may come with
    /// cache overrides (only from `on-origin-response`).
    fn call(
        &self,
        hook: Hook,
        bindings: &PluginWorld,
        store: &mut Store<HostState>,
        body_limit: usize,
    ) -> impl Future<Output = wasmtime::Result<(Flow<Self>, Option<CacheOverride>)>> + Send;
}

impl Message for Request {
    fn body(&mut self) -> &mut Option<Vec<u8>> {
        &mut self.body
    }

    async fn call(
        &self,
        hook: Hook,
        bindings: &PluginWorld,
        store: &mut Store<HostState>,
        body_limit: usize,
    ) -> wasmtime::Result<(Flow<Self>, Option<CacheOverride>)> {
        let action = match hook {
            Hook::OnOriginRequest => bindings.call_on_origin_request(store, self).await?,
            _ => bindings.call_on_viewer_request(store, self).await?,
        };
        let flow = match action {
            RequestAction::Continue(mut next) => {
                check_request(&mut next, self, body_limit)?;
                Flow::Continue(next)
            }
            RequestAction::Respond(mut answer) => {
                check_response(&mut answer, body_limit)?;
                Flow::Respond(answer)
            }
        };
        Ok((flow, None))
    }
}

/// A response in a response chain, with the request it answers (shown to
/// the plugins without its body).
struct Answer<'r> {
    request: &'r Request,
    response: Response,
}

impl Message for Answer<'_> {
    fn body(&mut self) -> &mut Option<Vec<u8>> {
        &mut self.response.body
    }

    async fn call(
        &self,
        hook: Hook,
        bindings: &PluginWorld,
        store: &mut Store<HostState>,
        body_limit: usize,
    ) -> wasmtime::Result<(Flow<Self>, Option<CacheOverride>)> {
        let (action, cache) = match hook {
            Hook::OnOriginResponse => {
                let outcome = bindings
                    .call_on_origin_response(store, self.request, &self.response)
                    .await?;
                (outcome.action, Some(outcome.cache))
            }
            _ => {
                let action = bindings
                    .call_on_viewer_response(store, self.request, &self.response)
                    .await?;
                (action, None)
            }
        };
        Ok(match action {
            ResponseAction::Continue(mut next) => {
                // Only a response that passes the checks may change caching.
                check_response(&mut next, body_limit)?;
                let next = Answer {
                    request: self.request,
                    response: next,
                };
                (Flow::Continue(next), cache)
            }
            ResponseAction::Respond(mut answer) => {
                check_response(&mut answer, body_limit)?;
                (Flow::Respond(answer), None)
            }
        })
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

    /// Runs the `on-viewer-request` chain. The request's body is held or
    /// streamed as [`RequestContext::request_body`] says.
    pub async fn on_viewer_request(
        &mut self,
        chain: &[Arc<Plugin>],
        request: Request,
    ) -> Flow<Request> {
        let access = self.context.request_body;
        self.run_chain(chain, Hook::OnViewerRequest, request, access)
            .await
            .0
    }

    /// Runs the `on-origin-request` chain, like `on_viewer_request`.
    pub async fn on_origin_request(
        &mut self,
        chain: &[Arc<Plugin>],
        request: Request,
    ) -> Flow<Request> {
        let access = self.context.request_body;
        self.run_chain(chain, Hook::OnOriginRequest, request, access)
            .await
            .0
    }

    /// Runs the `on-origin-response` chain on `response`, whose body is
    /// held or streamed as `access` says. Plugins see `request` without its
    /// body.
    pub async fn on_origin_response(
        &mut self,
        chain: &[Arc<Plugin>],
        request: &Request,
        response: Response,
        access: BodyAccess,
    ) -> OriginResponseFlow {
        let request = without_body(request);
        let answer = Answer {
            request: &request,
            response,
        };
        let (flow, cache) = self
            .run_chain(chain, Hook::OnOriginResponse, answer, access)
            .await;
        OriginResponseFlow {
            flow: response_flow(flow),
            cache,
        }
    }

    /// Runs the `on-viewer-response` chain, like `on_origin_response`.
    pub async fn on_viewer_response(
        &mut self,
        chain: &[Arc<Plugin>],
        request: &Request,
        response: Response,
        access: BodyAccess,
    ) -> Flow<Response> {
        let request = without_body(request);
        let answer = Answer {
            request: &request,
            response,
        };
        response_flow(
            self.run_chain(chain, Hook::OnViewerResponse, answer, access)
                .await
                .0,
        )
    }

    /// Passes `message` through `chain`, one hook call per plugin, until one
    /// answers; returns how it ended and the cache overrides of the plugins
    /// that let it through (later plugins win field by field). A body over
    /// a plugin's limit, or streamed, is withheld from it (and the plugin is
    /// told) and put back afterwards; a body the plugin returns as `none` is
    /// kept, one it returns as `some` replaces the original (a streamed one
    /// included).
    async fn run_chain<T: Message>(
        &mut self,
        chain: &[Arc<Plugin>],
        hook: Hook,
        mut message: T,
        mut access: BodyAccess,
    ) -> (Flow<T>, CacheOverride) {
        let mut cache = CacheOverride {
            cacheable: None,
            ttl_seconds: None,
        };
        for plugin in chain.iter().filter(|p| p.implements(hook)) {
            let withheld = match message.body() {
                Some(body) if body.len() > plugin.limits.max_body_bytes => message.body().take(),
                _ => None,
            };
            let body_withheld = withheld.is_some() || access == BodyAccess::Streamed;
            match self.run(plugin, hook, &message, body_withheld).await {
                Ok((Flow::Continue(mut next), overrides)) => {
                    if next.body().is_none() {
                        *next.body() = withheld.or_else(|| message.body().take());
                    } else {
                        access = BodyAccess::Held;
                    }
                    if let Some(overrides) = overrides {
                        cache.cacheable = overrides.cacheable.or(cache.cacheable);
                        cache.ttl_seconds = overrides.ttl_seconds.or(cache.ttl_seconds);
                    }
                    message = next;
                }
                Ok((Flow::Respond(answer), _)) => return (Flow::Respond(answer), cache),
                Err(policy) => {
                    if withheld.is_some() {
                        *message.body() = withheld;
                    }
                    if policy == FailurePolicy::FailClosed {
                        return (Flow::Respond(self.failure_response()), cache);
                    }
                }
            }
        }
        (Flow::Continue(message), cache)
    }

    /// Runs one hook of `plugin` on `message` with this request's instance
    /// of it, making the instance on first use. The hook yields its thread
    /// at each epoch tick and fails once it has run for its deadline. A
    /// failure poisons the instance for the rest of the request; the error
    /// is the policy to apply. `body_withheld` is what the plugin is told
    /// about the message's body.
    async fn run<T: Message>(
        &mut self,
        plugin: &Arc<Plugin>,
        hook: Hook,
        message: &T,
        body_withheld: bool,
    ) -> Result<(Flow<T>, Option<CacheOverride>), FailurePolicy> {
        let index = match self
            .entries
            .iter()
            .position(|e| Arc::ptr_eq(&e.plugin, plugin))
        {
            Some(i) => i,
            None => {
                let entry = self.instantiate(plugin, hook).await;
                self.entries.push(entry);
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        let (store, bindings) = match &mut entry.slot {
            Slot::Live { store, bindings } => (store, bindings),
            Slot::Failed => return Err(plugin.policy),
            Slot::NoInstance => return Err(FailurePolicy::FailClosed),
        };
        let state = store.data_mut();
        state.hook = hook;
        state.body_withheld = body_withheld;
        let _calling = plugin.engine.calling();
        arm(store, plugin.limits.hook_deadline, Yielding::EachTick);
        let result = message
            .call(hook, bindings, store, plugin.limits.max_body_bytes)
            .await;
        let budget = &store.data().budget;
        let (elapsed, ran) = (budget.elapsed(), budget.ran());
        entry.receipt.hooks.push((hook, elapsed));
        plugin.metrics.hook_ran(hook, elapsed, ran);
        result.map_err(|error| {
            let reason = describe_failure(&error, plugin.limits.hook_deadline);
            entry.fail(hook, reason, &self.context.request_id);
            plugin.policy
        })
    }

    async fn instantiate(&self, plugin: &Arc<Plugin>, hook: Hook) -> Entry {
        let mut store = plugin.new_store(self.context.clone(), hook);
        let calling = plugin.engine.calling();
        arm(&mut store, plugin.limits.hook_deadline, Yielding::EachTick);
        let instantiated = plugin.pre.instantiate_async(&mut store).await;
        drop(calling);
        let budget = &store.data().budget;
        let (elapsed, ran) = (budget.elapsed(), budget.ran());
        let mut entry = Entry {
            plugin: plugin.clone(),
            slot: Slot::Failed,
            receipt: PluginReceipt::new(plugin.identity.name.clone(), elapsed),
        };
        plugin.metrics.instantiated(elapsed, ran);
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

/// A response chain's outcome, without the request it carried.
fn response_flow(flow: Flow<Answer<'_>>) -> Flow<Response> {
    match flow {
        Flow::Continue(answer) => Flow::Continue(answer.response),
        Flow::Respond(response) => Flow::Respond(response),
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
