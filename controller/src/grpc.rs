//! The gRPC API for edges (`parapet.edge.v1.EdgeControl`), authenticated
//! per edge.

use std::pin::Pin;

use futures_util::Stream;
use parapet_proto::edge::edge_control_server::EdgeControl;
use parapet_proto::edge::{
    AckResponse, ConfigSnapshot, FetchPluginRequest, HeartbeatRequest, HeartbeatResponse, LogBatch,
    Order, OrderAck, PluginChunk, RegisterRequest, RegisterResponse, ShipLogsResponse,
    WatchConfigRequest, WatchOrdersRequest,
};
use tonic::{Request, Response, Status, Streaming};

use crate::api::App;
use crate::auth::{bearer, AuthError, Principal};
use crate::edges::{self, Heartbeat, Registration};
use crate::store::StoreError;

/// The service, over the controller's state.
pub struct EdgeService {
    app: App,
}

impl EdgeService {
    /// A service reading and writing `app`'s store.
    pub fn new(app: App) -> Self {
        EdgeService { app }
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
            },
        )
        .await
        .map_err(store_status)?;
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
        };
        if !edges::heartbeat(&self.app.store, &edge, beat)
            .await
            .map_err(store_status)?
        {
            return Err(Status::not_found(format!(
                "edge {edge} is not registered; register again"
            )));
        }
        Ok(Response::new(HeartbeatResponse {
            interval_ms: self.app.heartbeat_interval_ms,
        }))
    }

    type WatchConfigStream = BoxStream<ConfigSnapshot>;

    async fn watch_config(
        &self,
        request: Request<WatchConfigRequest>,
    ) -> Result<Response<Self::WatchConfigStream>, Status> {
        self.edge(&request).await?;
        Err(Status::unimplemented(
            "WatchConfig is not built yet (issue 4)",
        ))
    }

    type FetchPluginStream = BoxStream<PluginChunk>;

    async fn fetch_plugin(
        &self,
        request: Request<FetchPluginRequest>,
    ) -> Result<Response<Self::FetchPluginStream>, Status> {
        self.edge(&request).await?;
        Err(Status::unimplemented(
            "FetchPlugin is not built yet (issue 4)",
        ))
    }

    type WatchOrdersStream = BoxStream<Order>;

    async fn watch_orders(
        &self,
        request: Request<WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        self.edge(&request).await?;
        Err(Status::unimplemented(
            "WatchOrders is not built yet (issue 4)",
        ))
    }

    async fn ack_order(&self, request: Request<OrderAck>) -> Result<Response<AckResponse>, Status> {
        self.edge(&request).await?;
        Err(Status::unimplemented("AckOrder is not built yet (issue 4)"))
    }

    async fn ship_logs(
        &self,
        request: Request<Streaming<LogBatch>>,
    ) -> Result<Response<ShipLogsResponse>, Status> {
        self.edge(&request).await?;
        Err(Status::unimplemented("ShipLogs is not built yet (issue 4)"))
    }
}
