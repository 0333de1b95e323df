//! Blue/green deployments: a version rolled out to one edge group while
//! the others keep the live one, then promoted to all or rolled back. The
//! state is stored, so it survives a controller restart.

use serde_json::json;

use crate::model::{now_ms, Deployment, DeploymentState, Distribution};
use crate::store::{Collection, Store, StoreError};

/// Why a deployment step was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Not possible in this state: 409.
    #[error("{0}")]
    Conflict(String),
    /// Missing distribution or version: 404.
    #[error("{0} not found")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rolling deployment of a distribution, if any.
pub async fn active(store: &Store, distribution: &str) -> Result<Option<Deployment>, StoreError> {
    let rolling: Vec<Deployment> = store
        .find(
            Collection::Deployments,
            &[
                ("distribution", json!(distribution)),
                ("state", json!(DeploymentState::Rolling)),
            ],
        )
        .await?;
    Ok(rolling.into_iter().next())
}

/// Every rolling deployment.
pub async fn rolling(store: &Store) -> Result<Vec<Deployment>, StoreError> {
    store
        .find(
            Collection::Deployments,
            &[("state", json!(DeploymentState::Rolling))],
        )
        .await
}

/// Starts rolling `version` of `distribution` out to `group`.
pub async fn start(
    store: &Store,
    distribution: &Distribution,
    version: u64,
    group: &str,
) -> Result<Deployment, DeployError> {
    if group.is_empty() {
        return Err(DeployError::Conflict(
            "the edge group must not be empty".into(),
        ));
    }
    if active(store, &distribution.id).await?.is_some() {
        return Err(DeployError::Conflict(format!(
            "a deployment of `{}` is already in progress",
            distribution.id
        )));
    }
    let Some(rolled_out) = crate::distributions::version(store, &distribution.id, version).await?
    else {
        return Err(DeployError::NotFound(format!(
            "version {version} of `{}`",
            distribution.id
        )));
    };
    if version == distribution.live_version {
        return Err(DeployError::Conflict(format!(
            "version {version} is already live"
        )));
    }
    // An older version's domains may have been taken since.
    crate::claims::claim(
        store,
        &distribution.id,
        &distribution.customer,
        &crate::distributions::domains_of(&rolled_out),
        false,
    )
    .await
    .map_err(|e| match e {
        crate::claims::ClaimError::Store(e) => DeployError::Store(e),
        crate::claims::ClaimError::Taken(why) => DeployError::Conflict(why),
    })?;
    let now = now_ms();
    let id = format!(
        "dep_{}_{}",
        distribution.id,
        store.backend().increment("deployments").await?
    );
    let deployment = Deployment {
        id: id.clone(),
        distribution: distribution.id.clone(),
        customer: distribution.customer.clone(),
        group: group.to_string(),
        from_version: distribution.live_version,
        to_version: version,
        state: DeploymentState::Rolling,
        created_ms: now,
        updated_ms: now,
    };
    store
        .insert(Collection::Deployments, &id, &deployment)
        .await?;
    reserve_domains(store, &distribution.id).await?;
    crate::revision::bump(store, std::slice::from_ref(&distribution.id)).await?;
    Ok(deployment)
}

/// Keeps the distribution's reserved domains to those of its versions in
/// service.
async fn reserve_domains(store: &Store, id: &str) -> Result<(), StoreError> {
    let Some(distribution) = store
        .get::<Distribution>(Collection::Distributions, id)
        .await?
    else {
        return Ok(());
    };
    let domains = crate::distributions::reserved_domains(
        store,
        id,
        distribution.live_version,
        distribution.latest_version,
    )
    .await?;
    store
        .update(
            Collection::Distributions,
            id,
            &[],
            &json!({ "domains": domains }),
        )
        .await?;
    crate::claims::keep_only(store, id, &distribution.domains, &domains).await
}

/// Ends a rolling deployment: promoted (the new version goes live
/// everywhere) or rolled back.
pub async fn finish(
    store: &Store,
    deployment: &Deployment,
    promote: bool,
) -> Result<Deployment, DeployError> {
    let state = if promote {
        DeploymentState::Promoted
    } else {
        DeploymentState::RolledBack
    };
    let changed = store
        .update(
            Collection::Deployments,
            &deployment.id,
            &[("state", json!(DeploymentState::Rolling))],
            &json!({ "state": state, "updated_ms": now_ms() }),
        )
        .await?;
    if !changed {
        return Err(DeployError::Conflict(format!(
            "deployment {} is not rolling",
            deployment.id
        )));
    }
    if promote {
        store
            .update(
                Collection::Distributions,
                &deployment.distribution,
                &[],
                &json!({ "live_version": deployment.to_version }),
            )
            .await?;
    }
    reserve_domains(store, &deployment.distribution).await?;
    crate::revision::bump(store, std::slice::from_ref(&deployment.distribution)).await?;
    store
        .get(Collection::Deployments, &deployment.id)
        .await?
        .ok_or_else(|| DeployError::NotFound(format!("deployment {}", deployment.id)))
}
