//! `/admin/analytics/rfm`: the RFM snapshot of a day, for operators.

use crate::{
    auth::Operator,
    envelope::Envelope,
    error::{ApiError, ApiResult, BAD_REQUEST, SIGNED_IN, UNPROCESSABLE},
    routes::page_limit,
    state::AppState,
    wire::Amount,
};
use poem_openapi::{Object, OpenApi, Tags, param::Query, payload::Json};
use rust_decimal::Decimal;
use std::sync::Arc;
use time::Date;
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Operators: analytics.
    Analytics,
}

pub struct AnalyticsApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct SegmentCount {
    /// `"111"` to `"555"`: recency, frequency and monetary scores.
    pub segment: String,
    pub members: u64,
}

#[derive(Debug, Object)]
pub struct MemberRfm {
    pub user_id: Uuid,
    pub recency_days: u32,
    pub frequency: u32,
    pub monetary: Amount,
    pub r_score: u8,
    pub f_score: u8,
    pub m_score: u8,
    pub segment: String,
    /// 0.0 to 1.0.
    pub churn_risk: f64,
}

#[derive(Debug, Object)]
pub struct RfmReport {
    pub date: Date,
    pub segments: Vec<SegmentCount>,
    /// Members' scores, by user id; pass `next_cursor` as `cursor` for more.
    pub items: Vec<MemberRfm>,
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

#[OpenApi(prefix_path = "/admin/analytics", tag = "Tag::Analytics")]
impl AnalyticsApi {
    /// Members per RFM segment and each member's scores, for the snapshot of `date`.
    #[oai(path = "/rfm", method = "get")]
    async fn rfm(
        &self,
        _operator: Operator,
        date: Query<Date>,
        cursor: Query<Option<Uuid>>,
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<Envelope<RfmReport>>, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }> {
        let limit = page_limit(limit.0)?;
        let ch = &self.state.clickhouse;
        let unavailable = |e: anyhow::Error| {
            tracing::warn!(error = %format!("{e:#}"), "ClickHouse unavailable");
            ApiError::Unavailable(Json(crate::envelope::ErrorEnvelope::new(
                "analytics_unavailable",
                "Analytics are unavailable; try again shortly.",
            )))
        };
        let segments = storage::rfm::segment_counts(ch, date.0)
            .await
            .map_err(unavailable)?;
        let mut scores = storage::rfm::member_scores(ch, date.0, cursor.0, limit as u64 + 1)
            .await
            .map_err(unavailable)?;
        let next_cursor = (scores.len() > limit).then(|| scores[limit - 1].user_id.to_string());
        scores.truncate(limit);
        Ok(Json(Envelope::new(RfmReport {
            date: date.0,
            segments: segments
                .into_iter()
                .map(|(segment, members)| SegmentCount { segment, members })
                .collect(),
            items: scores
                .into_iter()
                .map(|s| MemberRfm {
                    user_id: s.user_id,
                    recency_days: s.recency_days,
                    frequency: s.frequency,
                    monetary: Amount(Decimal::new(s.monetary, 2)),
                    r_score: s.r_score,
                    f_score: s.f_score,
                    m_score: s.m_score,
                    segment: s.segment,
                    churn_risk: s.churn_risk,
                })
                .collect(),
            next_cursor,
        })))
    }
}
