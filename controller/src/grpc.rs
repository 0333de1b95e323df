//! The gRPC API for edges (`parapet.edge.v1.EdgeControl`), authenticated
//! per edge.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::Stream;
use parapet_proto::edge::edge_control_server::EdgeControl;
use parapet_proto::edge::order::Work as OrderWork;
use parapet_proto::edge::{
    AckResponse, ConfigUpdate, FetchPluginRequest, HeartbeatRequest, HeartbeatResponse, LogBatch,
    Order, OrderAck, PluginChunk, Prewarm, Purge, RegisterRequest, RegisterResponse,
    ShipLogsResponse, WatchConfigRequest, WatchOrdersRequest,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::api::App;
use crate::auth::{bearer, AuthError, Principal};
use crate::catalog::Revisions;
use crate::edges::{self, Heartbeat, Registration};
use crate::jobs;
use crate::model::{now_ms, Edge, LogRecord, PluginVersion, PurgeTarget, Work};
use crate::snapshot::Composer;
use crate::store::{Collection, Store, StoreError};

/// The service, over the controller's state.
pub struct EdgeService {
    app: App,
    /// Edges whose last heartbeat's plugin costs are still being recorded.
    recording_costs: Arc<Mutex<HashSet<String>>>,
    /// Turns true when the controller stops: watch streams end then, so
    /// the gRPC server's graceful shutdown does not wait on them.
    stopped: watch::Receiver<bool>,
}

impl EdgeService {
    /// Records an edge's plugin costs off the heartbeat's path, one batch
    /// per edge at a time: however many plugins an edge's customers run,
    /// its heartbeats (and so its health) never wait on them. A batch that
    /// comes while the edge's previous one is still being written is
    /// dropped and counted; a failure is logged. Costs are for people to
    /// look at, never a reason for the edge to send its heartbeat again.
    fn record_costs(&self, edge: String, costs: Vec<parapet_proto::edge::PluginCost>) {
        if costs.is_empty() {
            return;
        }
        let busy = self.recording_costs.clone();
        if !lock(&busy).insert(edge.clone()) {
            metrics::counter!("parapet_controller_plugin_costs_dropped_total").increment(1);
            return;
        }
        let store = self.app.store.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::plugin_costs::record(&store, &edge, &costs).await {
                tracing::warn!(%edge, error = %e, "cannot record plugin costs");
            }
            lock(&busy).remove(&edge);
        });
    }

    /// A service reading and writing `app`'s store, whose streams end when
    /// `stopped` turns true.
    pub fn new(app: App, stopped: watch::Receiver<bool>) -> Self {
        EdgeService {
            app,
            recording_costs: Default::default(),
            stopped,
        }
    }

    /// The calling edge's id, from its credential.
    async fn edge<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = bearer(header).map_err(auth_status)?;
        match self.app.auth.principal(token).await.map_err(auth_status)? {
            Principal::Edge(id) => Ok(id),
            _ => Err(Status::permission_denied(
                "this API takes an edge credential (from Register)",
            )),
        }
    }
}

fn auth_status(e: AuthError) -> Status {
    match e {
        AuthError::Store(e) => store_status(e),
        other => Status::unauthenticated(other.to_string()),
    }
}

fn store_status(e: StoreError) -> Status {
    tracing::error!(error = %e, "storage failed during a gRPC call");
    Status::unavailable(format!("storage unavailable, try again: {e}"))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl EdgeControl for EdgeService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let body = request.into_inner();
        if !self.app.auth.takes_new_edges() {
            return Err(Status::failed_precondition(
                "this controller takes no new edges: it was started without an edge bootstrap token (--edge-bootstrap-token or PARAPET_EDGE_BOOTSTRAP_TOKEN)",
            ));
        }
        if !self.app.auth.is_bootstrap(&body.bootstrap_token) {
            return Err(Status::unauthenticated("invalid bootstrap token"));
        }
        if body.name.is_empty() || body.pop.is_empty() {
            return Err(Status::invalid_argument("name and pop must not be empty"));
        }
        let role = if body.role.is_empty() {
            "edge"
        } else {
            body.role.as_str()
        };
        if role != "edge" && role != "shield" {
            return Err(Status::invalid_argument(format!(
                "role `{role}`: expected edge or shield"
            )));
        }
        let group = if body.group.is_empty() {
            "default"
        } else {
            body.group.as_str()
        };
        let (edge, credential) = edges::register(
            &self.app.store,
            Registration {
                name: &body.name,
                pop: &body.pop,
                role,
                group,
                version: &body.version,
                credential: &body.credential,
            },
        )
        .await
        .map_err(|e| match e {
            edges::RegisterError::NameTaken { .. } => Status::already_exists(e.to_string()),
            edges::RegisterError::Store(e) => store_status(e),
        })?;
        tracing::info!(edge = %edge.id, name = %edge.name, pop = %edge.pop, group = %edge.group, "edge registered");
        Ok(Response::new(RegisterResponse {
            edge_id: edge.id,
            credential,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let edge = self.edge(&request).await?;
        let body = request.into_inner();
        let beat = Heartbeat {
            config_revision: body.config_revision,
            version: body.version,
            requests_per_second: body.requests_per_second,
            cache_bytes: body.cache_bytes,
            cache_objects: body.cache_objects,
            serving: body.serving,
            statuses: body.statuses,
            statuses_complete: body.statuses_complete,
        };
        let costs = body.plugin_costs;
        if !edges::heartbeat(&self.app.store, &edge, beat)
            .await
            .map_err(store_status)?
        {
            return Err(not_registered(&edge));
        }
        self.record_costs(edge.clone(), costs);
        Ok(Response::new(HeartbeatResponse {
            interval_ms: self.app.heartbeat_interval_ms,
        }))
    }

    type WatchConfigStream = BoxStream<ConfigUpdate>;

    async fn watch_config(
        &self,
        request: Request<WatchConfigRequest>,
    ) -> Result<Response<Self::WatchConfigStream>, Status> {
        let edge_id = self.edge(&request).await?;
        let have = request.into_inner().have;
        let store = self.app.store.clone();
        let secret = self.app.secret_key.clone();
        let mut revisions = self.app.catalog.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut stopped = self.stopped.clone();
        tokio::spawn(async move {
            let mut view = EdgeView::from_have(have);
            let mut first = true;
            loop {
                let latest = revisions.borrow_and_update().clone();
                let updates = async {
                    // A removed edge's stream ends: it registers again.
                    let edge = registered_edge(&store, &edge_id).await?;
                    config_updates(&store, secret.as_deref(), &edge, &latest, &mut view, first)
                        .await
                        .map_err(store_status)
                }
                .await;
                match updates {
                    Ok(updates) => {
                        for update in updates {
                            if !deliver(&tx, Ok(update), &mut stopped).await {
                                return;
                            }
                        }
                    }
                    Err(status) => {
                        deliver(&tx, Err(status), &mut stopped).await;
                        return;
                    }
                }
                first = false;
                // A change, or a second's wait: a removed edge's stream
                // ends within a second though nothing changes.
                tokio::select! {
                    changed = revisions.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(REGISTRATION_CHECK) => {}
                    _ = tx.closed() => return,
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type FetchPluginStream = BoxStream<PluginChunk>;

    async fn fetch_plugin(
        &self,
        request: Request<FetchPluginRequest>,
    ) -> Result<Response<Self::FetchPluginStream>, Status> {
        self.edge(&request).await?;
        let sha256 = request.into_inner().sha256;
        let bytes = self
            .app
            .store
            .backend()
            .get_blob(&PluginVersion::blob(&sha256))
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("no plugin sha256:{sha256}")))?;
        let chunks: Vec<Result<PluginChunk, Status>> = bytes
            .chunks(PLUGIN_CHUNK)
            .map(|c| Ok(PluginChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures_util::stream::iter(chunks))))
    }

    type WatchOrdersStream = BoxStream<Order>;

    async fn watch_orders(
        &self,
        request: Request<WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        let edge_id = self.edge(&request).await?;
        let store = self.app.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut stopped = self.stopped.clone();
        let resend_after =
            Duration::from_millis(self.app.heartbeat_interval_ms) * ORDER_RESEND_HEARTBEATS;
        tokio::spawn(async move {
            let mut changes = store.order_changes();
            // When each pending order was last sent.
            let mut sent: HashMap<String, Instant> = HashMap::new();
            let mut backlog_done = false;
            loop {
                // A removed edge's stream ends: it registers again.
                let pending = async {
                    registered_edge(&store, &edge_id).await?;
                    jobs::pending(&store, &edge_id).await.map_err(store_status)
                }
                .await;
                match pending {
                    Ok(orders) => {
                        sent.retain(|id, _| orders.iter().any(|o| &o.id == id));
                        for order in orders {
                            // An order whose ack was lost is sent again.
                            if sent
                                .get(&order.id)
                                .is_some_and(|at| at.elapsed() < resend_after)
                            {
                                continue;
                            }
                            sent.insert(order.id.clone(), Instant::now());
                            if !deliver(&tx, Ok(to_message(order)), &mut stopped).await {
                                return;
                            }
                        }
                        if !backlog_done {
                            backlog_done = true;
                            let marker = Order {
                                backlog_done: true,
                                ..Default::default()
                            };
                            if !deliver(&tx, Ok(marker), &mut stopped).await {
                                return;
                            }
                        }
                    }
                    Err(status) => {
                        deliver(&tx, Err(status), &mut stopped).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = changes.changed() => {},
                    _ = tokio::time::sleep(WATCH_POLL) => {},
                    _ = tx.closed() => return,
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn ack_order(&self, request: Request<OrderAck>) -> Result<Response<AckResponse>, Status> {
        let edge = self.edge(&request).await?;
        let ack = request.into_inner();
        let error = (!ack.error.is_empty()).then_some(ack.error);
        let known = jobs::acknowledge(&self.app.store, &edge, &ack.order_id, ack.count, error)
            .await
            .map_err(store_status)?;
        if !known {
            return Err(Status::not_found(format!(
                "no order {} for this edge",
                ack.order_id
            )));
        }
        Ok(Response::new(AckResponse {}))
    }

    async fn ship_logs(
        &self,
        request: Request<Streaming<LogBatch>>,
    ) -> Result<Response<ShipLogsResponse>, Status> {
        let edge = self.edge(&request).await?;
        let mut batches = request.into_inner();
        let mut accepted = 0u64;
        let expires_at = now_ms() + LOG_TTL_MS;
        while let Some(batch) = batches.message().await? {
            let batch_id = now_ms();
            let mut counted = Vec::with_capacity(batch.lines.len());
            for (n, line) in batch.lines.into_iter().enumerate() {
                let Ok(parsed) = serde_json::from_str::<serde_json::Value>(&line.json) else {
                    continue; // not JSON: dropped, and not counted
                };
                counted.push((line.distribution.clone(), line.timestamp_ms, parsed.clone()));
                let record = LogRecord {
                    distribution: line.distribution,
                    edge: edge.clone(),
                    timestamp_ms: line.timestamp_ms,
                    line: parsed,
                    expires_at,
                };
                let key = format!("{edge}:{batch_id}:{n}");
                self.app
                    .store
                    .put(Collection::Logs, &key, &record)
                    .await
                    .map_err(store_status)?;
                accepted += 1;
            }
            crate::traffic::count(&self.app.store, &edge, &counted)
                .await
                .map_err(store_status)?;
        }
        Ok(Response::new(ShipLogsResponse { accepted }))
    }
}

/// The set of edges whose costs are being recorded (a panic while it was
/// held leaves it usable).
fn lock(busy: &Mutex<HashSet<String>>) -> MutexGuard<'_, HashSet<String>> {
    busy.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How often watchers look for changes made by another replica.
const WATCH_POLL: Duration = Duration::from_secs(1);
/// Heartbeat intervals an edge has to acknowledge an order before it is
/// sent again (its acknowledgement may have been lost).
const ORDER_RESEND_HEARTBEATS: u32 = 6;
/// Plugin bytes per message.
const PLUGIN_CHUNK: usize = 1 << 20;
/// How long shipped logs are kept.
const LOG_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// The refusal an edge gets once it is no longer registered (it was
/// removed): it registers again, and watches under its new id.
fn not_registered(edge_id: &str) -> Status {
    Status::not_found(format!("edge {edge_id} is not registered; register again"))
}

/// The edge, while it is registered.
async fn registered_edge(store: &Store, edge_id: &str) -> Result<Edge, Status> {
    store
        .get(Collection::Edges, edge_id)
        .await
        .map_err(store_status)?
        .ok_or_else(|| not_registered(edge_id))
}

/// Sends to a watching edge; false once the edge went away or the
/// controller stops (a full stream does not hold up shutdown).
async fn deliver<T>(
    tx: &tokio::sync::mpsc::Sender<Result<T, Status>>,
    item: Result<T, Status>,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        sent = tx.send(item) => sent.is_ok(),
        _ = stopped.wait_for(|stop| *stop) => false,
    }
}

/// What a watched edge was sent.
#[derive(Default)]
struct EdgeView {
    /// Distribution → the revision it was last sent for (as a
    /// configuration, or as not served).
    revisions: HashMap<String, u64>,
    /// The distributions the edge has.
    held: std::collections::HashSet<String>,
}

impl EdgeView {
    /// What the edge says it has.
    fn from_have(have: Vec<parapet_proto::edge::DistributionHave>) -> Self {
        let mut view = EdgeView::default();
        for h in have {
            view.held.insert(h.id.clone());
            view.revisions.insert(h.id, h.revision);
        }
        view
    }
}

/// The updates that bring an edge from what it was sent (`view`) to
/// `latest` (none when nothing differs, except on the `first` pass, which
/// always tells the edge where it stands): changed distributions composed
/// for its group, removed ones named, in messages of at most
/// [`UPDATE_BYTES`] of configuration each. An edge that has nothing is
/// sent everything, with `reset`. `view` is updated to what the updates
/// bring. Private keys are opened with `secret`.
async fn config_updates(
    store: &Store,
    secret: Option<&crate::secrets::SecretKey>,
    edge: &Edge,
    latest: &Revisions,
    view: &mut EdgeView,
    first: bool,
) -> Result<Vec<ConfigUpdate>, StoreError> {
    let reset = first && view.held.is_empty();
    let mut changed: Vec<String> = latest
        .distributions
        .iter()
        .filter(|(id, revision)| view.revisions.get(*id) != Some(revision))
        .map(|(id, _)| id.clone())
        .collect();
    changed.sort();
    let mut removed: Vec<String> = view
        .held
        .iter()
        .filter(|id| !latest.distributions.contains_key(*id))
        .cloned()
        .collect();
    if changed.is_empty() && removed.is_empty() && !first {
        return Ok(Vec::new());
    }
    for id in &removed {
        view.held.remove(id);
        view.revisions.remove(id);
    }
    let composed = Composer::new(store, &edge.group, secret)
        .compose(&changed)
        .await?;
    let mut updates = vec![ConfigUpdate {
        revision: latest.revision,
        reset,
        ..Default::default()
    }];
    let mut bytes = 0;
    for (id, config) in composed {
        let revision = latest.distributions.get(&id).copied().unwrap_or(0);
        view.revisions.insert(id.clone(), revision);
        let Some(config) = config else {
            // Not served (its customer is suspended): the edge drops it.
            if view.held.remove(&id) {
                removed.push(id);
            }
            continue;
        };
        let size = config.config_json.len() + config.kv_json.len();
        if bytes + size > UPDATE_BYTES && bytes > 0 {
            updates.push(ConfigUpdate {
                revision: latest.revision,
                ..Default::default()
            });
            bytes = 0;
        }
        bytes += size;
        view.held.insert(id);
        if let Some(update) = updates.last_mut() {
            update.distributions.push(config);
        }
    }
    if let Some(last) = updates.last_mut() {
        last.removed = removed;
        last.complete = true;
    }
    Ok(updates)
}

/// How often a configuration stream checks its edge is still registered.
const REGISTRATION_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Most configuration bytes (configs and KV data) in one update message,
/// well within the edge's gRPC message limit; one distribution's data is
/// capped below it (see `[quotas]`).
const UPDATE_BYTES: usize = 1 << 20;

/// A stored order as the edge gets it.
fn to_message(order: crate::model::Order) -> Order {
    let work = match order.work {
        Work::Purge { target, soft } => {
            let mut purge = Purge {
                distribution: order.distribution,
                soft,
                ..Default::default()
            };
            match target {
                PurgeTarget::Url(url) => purge.url = url,
                PurgeTarget::Prefix(prefix) => purge.prefix = prefix,
                PurgeTarget::Tag(tag) => purge.tag = tag,
                PurgeTarget::Everything => purge.everything = true,
            }
            Some(OrderWork::Purge(purge))
        }
        Work::Prewarm { urls } => Some(OrderWork::Prewarm(Prewarm {
            urls,
            distribution: order.distribution,
        })),
        Work::Compact => None,
    };
    Order {
        id: order.id,
        work,
        backlog_done: false,
    }
}
