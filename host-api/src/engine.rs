//! The shared Wasmtime engine: compilation settings, instance allocator, the
//! linker with Parapet's host interfaces, and the epoch ticker.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::Plugin as PluginWorld;
use crate::limits::{MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES};
use crate::state::HostState;

/// Linear memory kept mapped between uses of a pool slot, from its start:
/// covers a Rust guest's 1 MiB stack (placed first, its hot end at the top),
/// static data and the SDK's arena. With pagemap scanning only dirty pages
/// are reset, so keeping more costs nothing for pages a request never
/// touched.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// Ticks the epoch ticker keeps ticking after the last call into plugin code
/// ended, before it parks: a busy edge, whose calls come microseconds apart,
/// never parks it and so never pays a wake-up per request.
const LINGER_TICKS: u32 = 50;

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots with copy-on-write memory images: fastest; at most
    /// `max_instances` plugin instances exist at once.
    Pooling {
        /// Concurrent component instances across all requests.
        max_instances: u32,
    },
    /// Memory mapped per instance: slower, unbounded.
    OnDemand,
}

/// Engine-wide settings. Per-plugin limits live in [`crate::PluginLimits`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instance allocation strategy.
    pub allocator: Allocator,
    /// The largest linear memory any plugin may be given (pool slot size).
    pub max_memory_bytes: usize,
    /// Granularity of hook deadlines, and the longest a hook runs before
    /// it yields its thread.
    pub epoch_tick: Duration,
    /// Where compiled plugins are cached, keyed by content hash and engine
    /// settings; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allocator: Allocator::Pooling {
                max_instances: 1000,
            },
            max_memory_bytes: 64 << 20,
            epoch_tick: Duration::from_millis(1),
            cache_dir: None,
        }
    }
}

/// Errors building the engine.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the WebAssembly engine: {0}")]
pub struct EngineError(String);

/// The Wasmtime engine and linker every plugin is compiled and linked with.
/// Cheap to share behind an `Arc`; stops its epoch ticker when dropped.
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) config: EngineConfig,
    ticker: Arc<Ticker>,
    ticker_thread: Option<JoinHandle<()>>,
}

/// The epoch ticker's state. It ticks while plugin code may be running (a
/// [`Calling`] guard is alive) and for [`LINGER_TICKS`] after, and sleeps
/// otherwise, so an idle edge, or one without plugins, does not wake up
/// every tick.
#[derive(Default)]
struct Ticker {
    /// Calls into plugins under way.
    calls: AtomicUsize,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

/// A call into plugin code under way: the epoch ticker runs while one is
/// alive, so the call's deadline and yields can happen.
pub(crate) struct Calling(Arc<Ticker>);

impl Drop for Calling {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PluginEngine {
    /// Builds the engine, links the host interfaces and starts the ticker.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .parallel_compilation(true);
        if let Allocator::Pooling { max_instances } = config.allocator {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(max_instances)
                .total_core_instances(max_instances.saturating_mul(MAX_CORE_INSTANCES as u32))
                .total_memories(max_instances.saturating_mul(MAX_MEMORIES as u32))
                .total_tables(max_instances.saturating_mul(MAX_TABLES as u32))
                // A hook runs on a fiber stack of its own while it is under way.
                .total_stacks(max_instances)
                .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
                .max_memories_per_component(MAX_MEMORIES as u32)
                .max_tables_per_component(MAX_TABLES as u32)
                .max_memory_size(config.max_memory_bytes)
                .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                .table_keep_resident(64 << 10)
                .pagemap_scan(Enabled::Auto);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| EngineError(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        PluginWorld::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| EngineError(format!("linking host interfaces: {e:#}")))?;

        if let Some(dir) = &config.cache_dir {
            // Owner-only: artifacts in it are loaded as native code.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| EngineError(format!("creating cache dir {}: {e}", dir.display())))?;
        }

        let ticker = Arc::new(Ticker::default());
        let ticker_thread = {
            let engine = engine.clone();
            let ticker = ticker.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("parapet-epoch".into())
                .spawn(move || {
                    let mut idle_ticks = 0;
                    while !ticker.stop.load(Ordering::Acquire) {
                        if ticker.calls.load(Ordering::Acquire) > 0 {
                            idle_ticks = 0;
                        } else if idle_ticks >= LINGER_TICKS {
                            // `calling` and `drop` unpark it; a wake-up
                            // with no call under way parks it again.
                            std::thread::park();
                            continue;
                        } else {
                            idle_ticks += 1;
                        }
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| EngineError(format!("starting epoch ticker: {e}")))?
        };
        let _ = ticker.thread.set(ticker_thread.thread().clone());

        Ok(PluginEngine {
            engine,
            linker,
            config,
            ticker,
            ticker_thread: Some(ticker_thread),
        })
    }

    /// Marks a call into plugin code (instantiation, a hook, a launch) as
    /// under way until the guard drops; the epoch ticker runs meanwhile.
    pub(crate) fn calling(&self) -> Calling {
        if self.ticker.calls.fetch_add(1, Ordering::AcqRel) == 0 {
            if let Some(thread) = self.ticker.thread.get() {
                thread.unpark();
            }
        }
        Calling(self.ticker.clone())
    }

    /// An engine for checking components only (uploads, builds): on-demand
    /// allocation, so it reserves no instance pool.
    pub fn validator() -> Result<Self, EngineError> {
        Self::new(EngineConfig {
            allocator: Allocator::OnDemand,
            ..Default::default()
        })
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::Release);
        if let Some(t) = self.ticker_thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
