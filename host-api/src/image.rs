//! Launch images: `on-launch` runs once, on a copy of the component
//! instrumented by Wizer, and a snapshot of that instance's memories and
//! globals becomes the component every request's instance starts from. So
//! what a plugin does at launch (parsing its configuration, compiling
//! regexes, building tables) is done once, not per request, and each
//! request still gets a fresh instance of the post-launch state.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use wasmtime::component::{Instance, Lift, WasmList};
use wasmtime::Store;
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::bindings::{Hook, Plugin as PluginWorld};
use crate::budget::{arm, Yielding};
use crate::engine::PluginEngine;
use crate::failure::describe_failure;
use crate::limits::PluginLimits;
use crate::load::LoadError;
use crate::plugin::new_store;
use crate::session::BodyAccess;
use crate::state::{HostState, PluginIdentity, RequestContext};

/// The Wizer settings for plugins: `on-launch` is called by the host (it
/// takes the configuration), so there is no init function to run or remove.
fn wizer() -> Wizer {
    let mut wizer = Wizer::new();
    wizer.keep_init_func(true);
    wizer
}

/// Wizer could not instrument or rewrite the component.
fn not_imageable(e: wasmtime::Error) -> LoadError {
    LoadError::Invalid(format!("cannot make a launch image: {e:#}"))
}

/// Checks that a component can be snapshotted after launch (Wizer supports
/// it), without running anything.
pub(crate) fn check_snapshottable(bytes: &[u8]) -> Result<(), LoadError> {
    wizer()
        .instrument_component(bytes)
        .map(drop)
        .map_err(not_imageable)
}

/// Runs `on-launch` with the plugin's configuration and returns the
/// component snapshotted after it: the plugin's launch image. Refuses what
/// `on-launch` refuses, and fails when it traps or overruns the launch
/// deadline. Never yields: run it on a thread that may block.
pub(crate) async fn launch_image(
    engine: &PluginEngine,
    bytes: &[u8],
    identity: &Arc<PluginIdentity>,
    limits: PluginLimits,
) -> Result<Vec<u8>, LoadError> {
    let wizer = wizer();
    let (context, instrumented) = wizer.instrument_component(bytes).map_err(not_imageable)?;
    let component = engine.compile(&instrumented)?;
    // Checked before anything runs: a component with forbidden imports is
    // refused here, never launched.
    let pre = engine.plugin_pre(&component)?;

    let launch_failed = |e: wasmtime::Error| {
        LoadError::LaunchFailed(describe_failure(&e, limits.launch_deadline).message)
    };
    let request = Arc::new(RequestContext {
        request_id: "launch".into(),
        pop_id: "".into(),
        client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        geo: None,
        request_body: BodyAccess::Held,
    });
    let mut store = new_store(engine, identity.clone(), limits, request, Hook::OnLaunch);
    let _calling = engine.calling();
    arm(&mut store, limits.launch_deadline, Yielding::Never);
    let instance = pre
        .instance_pre()
        .instantiate_async(&mut store)
        .await
        .map_err(launch_failed)?;
    let bindings = PluginWorld::new(&mut store, &instance).map_err(launch_failed)?;
    match bindings
        .call_on_launch(&mut store, &identity.config)
        .await
        .map_err(launch_failed)?
    {
        Ok(()) => {}
        Err(message) => return Err(LoadError::Rejected(message)),
    }

    // Reading the state back runs the instrumentation's accessors: give them
    // a deadline of their own.
    arm(&mut store, limits.launch_deadline, Yielding::Never);
    let mut launched = Launched {
        store: &mut store,
        instance,
        error: None,
    };
    let image = wizer
        .snapshot_component(&context, &mut launched)
        .await
        .map_err(not_imageable)?;
    match launched.error {
        Some(e) => Err(launch_failed(e)),
        None => Ok(image),
    }
}

/// A launched instance whose state Wizer reads through the accessors it
/// added. The first failure is kept in `error` (the trait has no way to
/// return one) and later reads return zeroes; the snapshot is then thrown
/// away.
struct Launched<'a> {
    store: &'a mut Store<HostState>,
    instance: Instance,
    error: Option<wasmtime::Error>,
}

impl Launched<'_> {
    /// Calls the accessor `func` of the exported instance `interface`.
    async fn read<R: Lift + Send + Sync + 'static>(
        &mut self,
        interface: &str,
        func: &str,
    ) -> Option<R> {
        if self.error.is_some() {
            return None;
        }
        let found = self
            .instance
            .get_export_index(&mut *self.store, None, interface)
            .and_then(|outer| {
                self.instance
                    .get_export_index(&mut *self.store, Some(&outer), func)
            })
            .ok_or_else(|| {
                wasmtime::format_err!("the launch image has no accessor {interface}#{func}")
            })
            .and_then(|index| {
                self.instance
                    .get_typed_func::<(), (R,)>(&mut *self.store, index)
            });
        let result = match found {
            Ok(func) => func.call_async(&mut *self.store, ()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok((value,)) => Some(value),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

impl ComponentInstanceState for Launched<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        match self.read::<WasmList<u8>>(instance, func).await {
            Some(list) => contents(list.as_le_slice(&*self.store)),
            None => contents(&[]),
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.read(instance, func).await.unwrap_or_default()
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.read(instance, func).await.unwrap_or_default()
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.read::<f32>(instance, func)
            .await
            .map_or(0, f32::to_bits)
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.read::<f64>(instance, func)
            .await
            .map_or(0, f64::to_bits)
    }
}
