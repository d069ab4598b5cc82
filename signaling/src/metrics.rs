//! Prometheus metrics: the recorder (installed once per process) and the
//! `GET /metrics` endpoint. The media plane's counters come from its
//! workers (through the recorder, and its forwarding-delay histogram
//! directly); signaling adds its own here.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. (Tests run
/// several servers in one process; they share it.)
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            // The estimate histogram gets buckets (a Prometheus histogram);
            // without them the exporter would render a summary.
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets_for_metric(
                    Matcher::Full(zync_sfu::driver::ESTIMATE_METRIC.into()),
                    &zync_sfu::driver::ESTIMATE_BUCKETS,
                )
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "estimate histogram buckets refused");
                    PrometheusBuilder::new()
                });
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// `GET /metrics`: Prometheus text format; 404 when disabled.
pub async fn render(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let handle = state
        .metrics
        .as_ref()
        .ok_or(ApiError::NotFound("metrics are disabled"))?;
    metrics::gauge!("zync_meetings_live").set(state.rooms.room_count() as f64);
    let mut text = handle.render();
    // Histograms the media workers keep themselves (lock-free, one add per
    // turn) rather than through the recorder.
    state.sfu.render_metrics(&mut text);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
