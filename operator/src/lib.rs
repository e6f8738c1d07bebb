//! The Dolphin operator: turns one `ImCluster` resource into a running cluster (start at
//! [`controller::run`]; the objects it makes are rendered by the pure functions of [`render`]).

pub mod apply;
pub mod controller;
pub mod crd;
pub mod election;
pub mod leader;
pub mod membership;
pub mod metrics;
pub mod render;
pub mod roll;
pub mod status;

/// The CRD of `ImCluster` as YAML, as checked in at `crds/imcluster.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&crd::crd())
}
