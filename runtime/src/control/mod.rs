//! Controller mode (`--controller URL`): the edge registers with
//! parapet-controller, follows its configuration one distribution at a
//! time (see [`distributions`]), fetches plugins by hash, applies purges and
//! prewarms, sends heartbeats (with each distribution's apply state) and
//! ships its access log.
//!
//! The state directory keeps the edge's credential and id, each
//! distribution as received and the plugins they use, so an edge restarts
//! and serves while the controller is away. At start, orders pending for the edge (purges
//! made while it was offline) are applied before it serves, when the
//! controller can be reached. An order sent again is acknowledged again,
//! not carried out twice; an edge that has to register under a new id
//! (it was removed) clears its cache, since it cannot know what was purged.

mod costs;
pub mod distributions;
mod owner_only;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context;
use parapet_proto::edge::edge_control_client::EdgeControlClient;
use parapet_proto::edge::order::Work;
use parapet_proto::edge::{
    FetchPluginRequest, HeartbeatRequest, LogBatch, LogLine, Order, OrderAck, RegisterRequest,
    WatchConfigRequest, WatchOrdersRequest,
};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::access_log::{AccessRecord, LOG_LINES_DROPPED};
use crate::edge::Edge;
use crate::orders::{self, Selection};
use crate::tls::Certificates;
use costs::CostReport;
use distributions::{Builder, Holdings, Received, Update};
use parapet_config::EdgeConfig;

/// How this edge presents itself to the controller.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// The controller's gRPC URL, e.g. `https://controller:7071`.
    pub url: String,
    /// The authority (PEM) the controller's certificate is checked against;
    /// none: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// This edge's client certificate and key (PEM files), for a
    /// controller that asks edges for one (mutual TLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// The operator's edge bootstrap token (used once, to register).
    pub bootstrap_token: String,
    /// Unique edge name.
    pub name: String,
    /// `edge` or `shield`.
    pub role: String,
    /// Edge group (blue/green).
    pub group: String,
    /// Credential, last good snapshot, plugins, KV files.
    pub state_dir: PathBuf,
}

/// The edge's link to the controller.
pub struct Control {
    options: ControlOptions,
    channel: Channel,
    /// Held while registering, so that the tasks needing a credential at
    /// once register only one edge.
    credential: tokio::sync::Mutex<Credential>,
    /// The distributions held, once [`Control::restore`] ran.
    holdings: Arc<Mutex<Holdings>>,
    /// How distributions are built (set by [`Control::restore`]).
    builder: OnceLock<Arc<Builder>>,
    /// Set when a registration gave a new id: the next heartbeat lists
    /// every distribution again.
    registered_anew: AtomicBool,
    /// The configuration without distributions (listeners, cache, ...).
    base: EdgeConfig,
    /// The orders carried out last.
    recent_acks: RecentAcks,
}

/// Acknowledgements of the orders carried out last: an order the
/// controller sends again (its acknowledgement was lost, or it took longer
/// than the controller waits) is acknowledged again, not carried out twice.
#[derive(Default)]
struct RecentAcks(Mutex<VecDeque<OrderAck>>);

impl RecentAcks {
    /// Acknowledgements kept.
    const KEPT: usize = 1024;

    fn get(&self, order_id: &str) -> Option<OrderAck> {
        self.lock().iter().find(|a| a.order_id == order_id).cloned()
    }

    fn remember(&self, ack: OrderAck) {
        let mut acks = self.lock();
        if acks.len() == Self::KEPT {
            acks.pop_front();
        }
        acks.push_back(ack);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<OrderAck>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The edge's credential, and how many registrations gave one: a refusal
/// drops the credential only when no registration happened since the
/// refused call started.
struct Credential {
    token: Option<String>,
    generation: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the controller's certificate is checked, and the edge's own.
fn controller_tls(options: &ControlOptions) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let tls = match &options.ca_file {
        Some(path) => {
            let pem = read(path)?;
            let found = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: not PEM certificates", path.display()))?;
            anyhow::ensure!(
                !found.is_empty(),
                "{}: no certificate in it",
                path.display()
            );
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
        None => ClientTlsConfig::new().with_native_roots(),
    };
    Ok(match &options.client_identity {
        Some((cert, key)) => tls.identity(Identity::from_pem(read(cert)?, read(key)?)),
        None => tls,
    })
}

/// Refuses a distribution id that could not be a file name in the state
/// directory (the controller only makes ids of letters, digits, `-` and
/// `_`).
fn check_id(id: &str) -> anyhow::Result<()> {
    let fine = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    anyhow::ensure!(
        fine,
        "distribution id `{id}` is not a plain name; update refused"
    );
    Ok(())
}

impl Control {
    /// Sets up the state directory (owner-only: looser modes found in it
    /// are tightened) and a lazily connecting channel; nothing is sent yet.
    pub fn new(options: ControlOptions, base: EdgeConfig) -> anyhow::Result<Arc<Self>> {
        for dir in [
            options.state_dir.clone(),
            options.state_dir.join("plugins"),
            options.state_dir.join(COMPILED),
            options.state_dir.join(distributions::DISTRIBUTIONS),
            options.state_dir.join(distributions::SERVING),
        ] {
            owner_only::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        owner_only::tighten(&options.state_dir)?;
        // Absolute, so plugin and KV paths mean the same from any base.
        let mut options = options;
        options.state_dir = options
            .state_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", options.state_dir.display()))?;
        let mut endpoint = tonic::transport::Endpoint::from_shared(options.url.clone())
            .with_context(|| format!("--controller `{}` is not a URL", options.url))?
            .connect_timeout(Duration::from_secs(3));
        if options.url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(controller_tls(&options)?)
                .context("setting up TLS to the controller")?;
        } else if options.ca_file.is_some() || options.client_identity.is_some() {
            anyhow::bail!(
                "a controller CA or client certificate needs an https:// controller URL, not `{}`",
                options.url
            );
        }
        let channel = endpoint.connect_lazy();
        let token = std::fs::read_to_string(options.state_dir.join("credential"))
            .ok()
            .map(|c| c.trim().to_string());
        Ok(Arc::new(Control {
            options,
            channel,
            credential: tokio::sync::Mutex::new(Credential {
                token,
                generation: 0,
            }),
            holdings: Arc::default(),
            builder: OnceLock::new(),
            registered_anew: AtomicBool::new(false),
            base,
            recent_acks: RecentAcks::default(),
        }))
    }

    fn client(&self) -> EdgeControlClient<Channel> {
        EdgeControlClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The configuration to start with: the base, without
    /// distributions; [`Control::restore`] adds those kept.
    pub fn initial_config(&self) -> EdgeConfig {
        self.base.clone()
    }

    /// Builds the distributions kept in the state directory and serves
    /// them: the edge starts with its last good configuration, each
    /// distribution on its own.
    pub async fn restore(&self, edge: &Arc<Edge>) -> anyhow::Result<()> {
        let builder = Arc::new(Builder {
            tier: Certificates::tier(&self.base, &self.options.state_dir)?,
            state_dir: self.options.state_dir.clone(),
            engine: edge.engine.clone(),
            base: self.base.clone(),
        });
        let _ = self.builder.set(builder.clone());
        let holdings = self.holdings.clone();
        let snapshot = tokio::task::spawn_blocking(move || {
            let restored = Holdings::restore(&builder);
            let snapshot = restored.snapshot(&builder);
            tracing::info!(
                revision = restored.revision,
                distributions = restored.have().len(),
                "starting from the distributions kept"
            );
            *lock(&holdings) = restored;
            snapshot
        })
        .await??;
        edge.apply(snapshot);
        Ok(())
    }

    /// Where compiled plugins are kept.
    pub fn compiled_plugins_dir(&self) -> PathBuf {
        self.options.state_dir.join(COMPILED)
    }

    /// A request carrying the credential; registers first when there is
    /// none.
    async fn request<T>(&self, message: T) -> Result<tonic::Request<T>, tonic::Status> {
        let credential = {
            let mut stored = self.credential.lock().await;
            match &stored.token {
                Some(token) => token.clone(),
                None => {
                    let token = self.register().await?;
                    stored.token = Some(token.clone());
                    stored.generation += 1;
                    token
                }
            }
        };
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {credential}")
            .parse()
            .map_err(|_| tonic::Status::internal("the stored credential is not a header value"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }

    /// Registers (again) and keeps the new credential on disk.
    async fn register(&self) -> Result<String, tonic::Status> {
        let answer = self
            .client()
            .register(RegisterRequest {
                bootstrap_token: self.options.bootstrap_token.clone(),
                name: self.options.name.clone(),
                pop: self.base.pop.id.clone(),
                role: self.options.role.clone(),
                group: self.options.group.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                credential: std::fs::read_to_string(self.options.state_dir.join("credential"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default(),
            })
            .await?
            .into_inner();
        let state = &self.options.state_dir;
        // Another id than before (the edge was removed, or the controller
        // lost its data; an edge from before ids were kept had a
        // credential): purges made meanwhile are unknown. The mark is on
        // disk first, so the cache is cleared even after a crash.
        let previous = std::fs::read_to_string(state.join("edge-id")).unwrap_or_default();
        let previous = previous.trim();
        let known_before = !previous.is_empty() || state.join("credential").exists();
        if previous != answer.edge_id {
            // The controller knows nothing of what this edge holds.
            self.registered_anew.store(true, Ordering::Relaxed);
        }
        if known_before && previous != answer.edge_id {
            owner_only::write_atomically(&self.cache_clear_mark(), b"").map_err(|e| {
                tonic::Status::internal(format!("cannot mark the cache to be cleared: {e}"))
            })?;
            tracing::warn!(was = %previous, edge = %answer.edge_id, "registered as a new edge: purges made meanwhile are unknown, so the cache will be cleared");
        }
        for (file, value) in [
            ("credential", &answer.credential),
            ("edge-id", &answer.edge_id),
        ] {
            if let Err(e) = owner_only::write_atomically(&state.join(file), value.as_bytes()) {
                tracing::warn!(error = %e, file, "cannot keep the registration; the edge will register again at its next start");
            }
        }
        tracing::info!(edge = %answer.edge_id, "registered with the controller");
        Ok(answer.credential)
    }

    /// The credential's generation, taken before a call whose refusal
    /// goes to [`Self::forget_credential_if_refused`].
    async fn credential_generation(&self) -> u64 {
        self.credential.lock().await.generation
    }

    /// Drops a credential the controller refused, so the next call
    /// registers again; unless another task registered since `generation`.
    async fn forget_credential_if_refused(&self, status: &tonic::Status, generation: u64) {
        if is_refusal(status) {
            let mut stored = self.credential.lock().await;
            if stored.generation == generation {
                stored.token = None;
            }
        }
    }

    /// Applies the orders pending for this edge, for up to `wait`: used
    /// before serving, so purges made while it was offline take effect
    /// first.
    pub async fn apply_backlog(self: &Arc<Self>, edge: &Arc<Edge>, wait: Duration) {
        let work = async {
            let generation = self.credential_generation().await;
            match self.apply_pending_orders(edge).await {
                // The stored credential is refused (the edge was removed,
                // or the controller lost its data): register, and try again.
                Err(status) if is_refusal(&status) => {
                    self.forget_credential_if_refused(&status, generation).await;
                    self.apply_pending_orders(edge).await
                }
                applied => applied,
            }
        };
        match tokio::time::timeout(wait, work).await {
            Ok(Ok(applied)) => tracing::info!(applied, "pending orders applied before serving"),
            Ok(Err(status)) => {
                tracing::warn!(error = %status, "cannot read pending orders; serving without them");
            }
            Err(_) => tracing::warn!(
                "the controller did not answer in time; serving without pending orders"
            ),
        }
        // Whatever became of the orders, a cache marked to be cleared is
        // cleared before serving.
        self.clear_cache_if_marked(edge).await;
    }

    /// Carries out the orders the controller has pending for this edge,
    /// up to the end of that backlog; returns how many.
    async fn apply_pending_orders(&self, edge: &Arc<Edge>) -> Result<usize, tonic::Status> {
        let request = self.request(WatchOrdersRequest {}).await?;
        let mut stream = self.client().watch_orders(request).await?.into_inner();
        let mut applied = 0;
        while let Some(order) = stream.message().await? {
            if order.backlog_done {
                break;
            }
            self.execute(edge, order).await;
            applied += 1;
        }
        Ok(applied)
    }

    /// Where the mark of a cache to be cleared is kept.
    fn cache_clear_mark(&self) -> PathBuf {
        self.options.state_dir.join("clear-cache")
    }

    /// Clears the cache if a registration under a new id marked it; the
    /// mark goes once the cache is empty.
    async fn clear_cache_if_marked(&self, edge: &Edge) {
        let mark = self.cache_clear_mark();
        if !mark.exists() {
            return;
        }
        match edge.cache.clear().await {
            Ok(removed) => {
                tracing::warn!(removed, "cache cleared after registering as a new edge");
                if let Err(e) = std::fs::remove_file(&mark) {
                    tracing::warn!(error = %e, "cannot remove the cache-clear mark; the cache will be cleared again");
                }
            }
            Err(e) => tracing::error!(error = %e, "trying again later"),
        }
    }

    /// Starts the background tasks: configuration, orders, heartbeats, logs.
    pub fn spawn(self: &Arc<Self>, edge: Arc<Edge>) {
        let (sink, lines) = tokio::sync::mpsc::channel(10_000);
        let _ = edge.log_sink.set(sink);
        tokio::spawn(self.clone().follow_config(edge.clone()));
        tokio::spawn(self.clone().follow_orders(edge.clone()));
        tokio::spawn(self.clone().heartbeats(edge));
        tokio::spawn(self.clone().ship_logs(lines));
    }

    /// Follows the configuration for as long as the edge runs.
    async fn follow_config(self: Arc<Self>, edge: Arc<Edge>) {
        let mut backoff = Backoff::default();
        loop {
            let generation = self.credential_generation().await;
            let result = async {
                let holdings = self.holdings.clone();
                let (have_revision, have) = tokio::task::spawn_blocking(move || {
                    let holdings = lock(&holdings);
                    (holdings.revision, holdings.have())
                })
                .await
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
                let request = self.request(WatchConfigRequest { have_revision, have }).await?;
                let mut stream = self.client().watch_config(request).await?.into_inner();
                let mut pending: Option<Update> = None;
                while let Some(message) = stream.message().await? {
                    backoff.reset();
                    let update = pending.get_or_insert_with(Update::default);
                    update.revision = message.revision;
                    update.reset |= message.reset;
                    update
                        .distributions
                        .extend(message.distributions.into_iter().map(Received::from));
                    update.removed.extend(message.removed);
                    if message.complete {
                        let update = pending.take().unwrap_or_default();
                        let revision = update.revision;
                        if let Err(e) = self.apply_update(&edge, update).await {
                            metrics::counter!("parapet_config_reloads_total", "result" => "refused").increment(1);
                            tracing::error!(revision, error = %format!("{e:#}"), "configuration update not applied; the running one stays");
                        }
                    }
                }
                Ok::<_, tonic::Status>(())
            }
            .await;
            if let Err(status) = result {
                self.forget_credential_if_refused(&status, generation).await;
                tracing::warn!(error = %status, "configuration stream lost; reconnecting");
            }
            backoff.wait().await;
        }
    }

    /// Fetches the plugins an update needs, builds the distributions it
    /// changes (each on its own) and serves the result.
    async fn apply_update(&self, edge: &Arc<Edge>, update: Update) -> anyhow::Result<()> {
        let builder = self
            .builder
            .get()
            .context("the kept distributions were not restored first")?
            .clone();
        for received in &update.distributions {
            check_id(&received.id)?;
            for sha256 in &received.plugins {
                let path = builder
                    .state_dir
                    .join("plugins")
                    .join(format!("{sha256}.wasm"));
                if !path.exists() {
                    // A plugin that cannot be fetched fails its
                    // distribution only (it cannot read the file).
                    if let Err(e) = self.fetch_plugin(sha256, &path).await {
                        tracing::error!(distribution = %received.id, error = %format!("{e:#}"), "cannot fetch a plugin");
                    }
                }
            }
        }
        let holdings = self.holdings.clone();
        let revision = update.revision;
        let snapshot = tokio::task::spawn_blocking(move || {
            let mut holdings = lock(&holdings);
            let changed = holdings.apply(&builder, update)?;
            changed
                .then(|| holdings.snapshot(&builder))
                .transpose()
                .map_err(anyhow::Error::from)
        })
        .await??;
        if let Some(snapshot) = snapshot {
            edge.apply(snapshot);
            metrics::counter!("parapet_config_reloads_total", "result" => "ok").increment(1);
        }
        tracing::info!(revision, "configuration from the controller applied");
        Ok(())
    }

    /// Downloads a plugin and checks its hash before keeping it.
    async fn fetch_plugin(&self, sha256: &str, path: &Path) -> anyhow::Result<()> {
        let request = self
            .request(FetchPluginRequest {
                sha256: sha256.to_string(),
            })
            .await?;
        let mut chunks = self.client().fetch_plugin(request).await?.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.message().await? {
            bytes.extend_from_slice(&chunk.data);
        }
        let actual = hex::encode(Sha256::digest(&bytes));
        anyhow::ensure!(
            actual == sha256,
            "plugin sha256:{sha256}: the controller sent bytes hashing to {actual}"
        );
        owner_only::write_atomically(path, &bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(sha256, size = bytes.len(), "plugin fetched");
        Ok(())
    }

    /// Follows orders for as long as the edge runs.
    async fn follow_orders(self: Arc<Self>, edge: Arc<Edge>) {
        let mut backoff = Backoff::default();
        loop {
            let generation = self.credential_generation().await;
            let result = async {
                let request = self.request(WatchOrdersRequest {}).await?;
                let mut stream = self.client().watch_orders(request).await?.into_inner();
                self.clear_cache_if_marked(&edge).await;
                while let Some(order) = stream.message().await? {
                    backoff.reset();
                    if !order.backlog_done {
                        self.execute(&edge, order).await;
                    }
                }
                Ok::<_, tonic::Status>(())
            }
            .await;
            if let Err(status) = result {
                self.forget_credential_if_refused(&status, generation).await;
                tracing::warn!(error = %status, "order stream lost; reconnecting");
            }
            backoff.wait().await;
        }
    }

    /// Carries out one order, unless it was already, and acknowledges it.
    async fn execute(&self, edge: &Arc<Edge>, order: Order) {
        let ack = match self.recent_acks.get(&order.id) {
            Some(ack) => {
                tracing::info!(order = %order.id, "repeated order acknowledged again");
                ack
            }
            None => {
                let ack = carry_out(edge, order).await;
                self.recent_acks.remember(ack.clone());
                ack
            }
        };
        let order_id = ack.order_id.clone();
        match self.request(ack).await {
            Ok(request) => {
                if let Err(status) = self.client().ack_order(request).await {
                    tracing::warn!(order = %order_id, error = %status, "cannot acknowledge; the controller will send the order again");
                }
            }
            Err(status) => tracing::warn!(order = %order_id, error = %status, "cannot acknowledge"),
        }
    }

    /// Sends working info every interval the controller asks for.
    async fn heartbeats(self: Arc<Self>, edge: Arc<Edge>) {
        let mut interval = Duration::from_secs(5);
        let mut last = (tokio::time::Instant::now(), edge.requests_served());
        let mut costs = CostReport::default();
        loop {
            let now = (tokio::time::Instant::now(), edge.requests_served());
            let seconds = now.0.duration_since(last.0).as_secs_f64().max(0.001);
            let stats = edge.cache.stats();
            let holdings = self.holdings.clone();
            let anew = self.registered_anew.swap(false, Ordering::Relaxed);
            let Ok((config_revision, (statuses, statuses_complete))) =
                tokio::task::spawn_blocking(move || {
                    let mut holdings = lock(&holdings);
                    if anew {
                        holdings.report_all();
                    }
                    (holdings.revision, holdings.take_statuses())
                })
                .await
            else {
                tracing::error!("reading the distributions' state failed");
                continue;
            };
            let beat = HeartbeatRequest {
                config_revision,
                version: env!("CARGO_PKG_VERSION").to_string(),
                requests_per_second: (now.1 - last.1) as f64 / seconds,
                cache_bytes: stats.memory_bytes + stats.disk_written_bytes,
                cache_objects: stats.objects,
                serving: !edge.draining.load(Ordering::Relaxed),
                statuses: statuses.clone(),
                statuses_complete,
                plugin_costs: costs.take(&edge.snapshot().routes),
            };
            let plugin_costs = beat.plugin_costs.clone();
            last = now;
            let generation = self.credential_generation().await;
            let result = async { self.client().heartbeat(self.request(beat).await?).await }.await;
            match result {
                Ok(answer) => {
                    interval =
                        Duration::from_millis(answer.into_inner().interval_ms.clamp(100, 60_000))
                }
                Err(status) => {
                    self.forget_credential_if_refused(&status, generation).await;
                    tracing::debug!(error = %status, "heartbeat not delivered");
                    costs.carry(plugin_costs);
                    let holdings = self.holdings.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        lock(&holdings).unreported(statuses, statuses_complete)
                    })
                    .await;
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Ships access log records in batches (every second, or 500 lines).
    async fn ship_logs(self: Arc<Self>, mut records: tokio::sync::mpsc::Receiver<AccessRecord>) {
        loop {
            let mut batch = Vec::new();
            let deadline = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    record = records.recv() => match record {
                        Some(record) => {
                            batch.push(LogLine { distribution: record.distribution, timestamp_ms: record.timestamp_ms, json: record.json });
                            if batch.len() >= 500 { break; }
                        }
                        None => return,
                    },
                    _ = &mut deadline => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let lines = batch.len();
            let generation = self.credential_generation().await;
            let result = async {
                let request = self
                    .request(tokio_stream::iter(vec![LogBatch { lines: batch }]))
                    .await?;
                self.client().ship_logs(request).await
            }
            .await;
            if let Err(status) = result {
                self.forget_credential_if_refused(&status, generation).await;
                metrics::counter!(LOG_LINES_DROPPED, "reason" => "not_shipped")
                    .increment(lines as u64);
                tracing::debug!(lines, error = %status, "log lines not shipped; dropped");
            }
        }
    }
}

/// Carries out one order (a purge or a prewarm); its acknowledgement.
async fn carry_out(edge: &Arc<Edge>, order: Order) -> OrderAck {
    let (count, error) = match order.work {
        Some(Work::Purge(purge)) => {
            let selection = if !purge.url.is_empty() {
                Some(Selection::Url(purge.url))
            } else if !purge.prefix.is_empty() {
                Some(Selection::Prefix(purge.prefix))
            } else if !purge.tag.is_empty() {
                Some(Selection::Tag(purge.tag))
            } else if purge.everything {
                Some(Selection::Everything)
            } else {
                None
            };
            // A customer's purge applies to its own distribution only.
            let resolved = match selection {
                Some(_) if purge.distribution.is_empty() => {
                    Err("the purge names no distribution".to_string())
                }
                Some(selection) => {
                    orders::resolve_purge(&edge.snapshot(), Some(&purge.distribution), selection)
                }
                None => Err("the purge selects nothing".to_string()),
            };
            match resolved {
                Ok(selector) => {
                    let purged = edge.cache.purge(&selector, purge.soft).await;
                    metrics::counter!("parapet_purged_objects_total", "kind" => if purge.soft { "soft" } else { "hard" })
                        .increment(purged as u64);
                    (purged as u64, String::new())
                }
                Err(error) => (0, error),
            }
        }
        Some(Work::Prewarm(prewarm)) => {
            let distribution = Some(prewarm.distribution.as_str()).filter(|d| !d.is_empty());
            let (warmed, failed) = orders::prewarm(edge, distribution, &prewarm.urls).await;
            let error = if failed.is_empty() {
                String::new()
            } else {
                serde_json::Value::Array(failed).to_string()
            };
            (warmed as u64, error)
        }
        None => (0, "this edge does not know that kind of order".to_string()),
    };
    tracing::info!(order = %order.id, count, "order carried out");
    OrderAck {
        order_id: order.id,
        count,
        error,
    }
}

/// Whether the controller refused the credential a call carried.
fn is_refusal(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unauthenticated | tonic::Code::NotFound
    )
}

/// The largest message the edge takes from the controller. The controller
/// sends configuration in updates of about 1 MiB; one distribution (its
/// table, plugin configs and KV, bounded by the controller's quotas) goes
/// whole in one update, so this bounds what a distribution may hold.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The state directory's directory of compiled plugins.
const COMPILED: &str = "compiled";

/// Reconnection delays: 0.5 s doubling to 10 s, reset by success.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn reset(&mut self) {
        self.0 = 0;
    }

    async fn wait(&mut self) {
        let delay = Duration::from_millis(500 * (1 << self.0.min(5))).min(Duration::from_secs(10));
        self.0 += 1;
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::owner_only::permission_bits;
    use super::*;

    /// A state directory left readable by others (an older edge, a copy)
    /// is made owner-only when the edge starts; what it adds is too.
    #[tokio::test]
    async fn the_state_directory_is_made_owner_only_at_start() {
        let root = tempfile::tempdir().expect("temp dir");
        let state = root.path().join("state");
        std::fs::create_dir_all(state.join(distributions::DISTRIBUTIONS)).expect("mkdir");
        std::fs::write(state.join("credential"), "ppe_secret\n").expect("write");
        std::fs::write(
            state.join(distributions::DISTRIBUTIONS).join("shop.json"),
            "{}",
        )
        .expect("write");
        for (path, mode) in [
            (state.clone(), 0o755),
            (state.join(distributions::DISTRIBUTIONS), 0o755),
            (state.join("credential"), 0o644),
            (
                state.join(distributions::DISTRIBUTIONS).join("shop.json"),
                0o644,
            ),
        ] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        let base =
            EdgeConfig::parse("[pop]\nid = \"t\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n")
                .expect("config");
        let control = Control::new(
            ControlOptions {
                url: "http://127.0.0.1:1".into(),
                ca_file: None,
                client_identity: None,
                bootstrap_token: "bootstrap".into(),
                name: "edge-1".into(),
                role: "edge".into(),
                group: "default".into(),
                state_dir: state.clone(),
            },
            base,
        )
        .expect("control");
        for dir in [
            "",
            "plugins",
            COMPILED,
            distributions::DISTRIBUTIONS,
            distributions::SERVING,
        ] {
            assert_eq!(permission_bits(&state.join(dir)), 0o700, "{dir}");
        }
        assert_eq!(permission_bits(&state.join("credential")), 0o600);
        assert_eq!(
            permission_bits(&state.join(distributions::DISTRIBUTIONS).join("shop.json")),
            0o600
        );
        assert_eq!(
            control.credential.lock().await.token.as_deref(),
            Some("ppe_secret")
        );
    }
}
