//! Settlement between partners (DESIGN.md "Settlement"): operators read every period (the
//! open one as a live preview, a closed one as its immutable statement, in JSON or CSV),
//! close a period that has ended and mark transfers paid; owners read their own business's
//! lines and transfers, nobody else's.

use crate::{
    audit::{self, Change},
    auth::{Auth, Operator, Superadmin},
    envelope::Envelope,
    error::{ApiError, ApiResult, BAD_REQUEST, CONFLICT, NOT_FOUND, SIGNED_IN, UNPROCESSABLE},
    routes::partner::acting_for,
    state::AppState,
    wire::Amount,
};
use domain::{
    roles::Right,
    settlement::{Line, Period, Transfer},
    statement_csv,
};
use poem_openapi::{
    ApiResponse, Object, OpenApi, ResponseContent, Tags,
    param::{Path, Query},
    payload::{Json, PlainText},
};
use rust_decimal::Decimal;
use std::{collections::HashMap, sync::Arc};
use storage::{
    businesses,
    settlement::{self, CloseRefusal, Closed, PaidRefusal, Preview, StoredTransfer},
};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Tags)]
enum Tag {
    /// Settlement between partners.
    Settlement,
}

pub struct SettlementApi {
    pub state: Arc<AppState>,
}

/// A business's part of a period.
#[derive(Debug, Object)]
pub struct SettlementLineView {
    pub business_id: Uuid,
    pub business_name: String,
    /// Cashback accrued there and bonus coupons it funded.
    pub issued: Amount,
    /// Bonuses spent at its counter (less what refunds gave back).
    pub redeemed: Amount,
    /// Bonuses it funded that expired.
    pub expired: Amount,
    /// Cashback taken back by refunds.
    pub refunded: Amount,
    /// `issued − refunded − expired − redeemed`: positive, the business pays the operator;
    /// negative, the operator pays the business.
    pub net: Amount,
}

/// A payment between a business and the coalition operator.
#[derive(Debug, Object)]
pub struct TransferView {
    /// Absent in an open period's preview.
    #[oai(nullable)]
    pub id: Option<Uuid>,
    pub business_id: Uuid,
    pub business_name: String,
    /// `to_operator` (the business pays) or `to_business` (the operator pays).
    pub direction: String,
    pub amount: Amount,
    #[oai(nullable)]
    pub paid_at: Option<OffsetDateTime>,
}

/// A period's settlement: a live preview while it is open, its statement once closed.
#[derive(Debug, Object)]
pub struct SettlementView {
    /// `YYYY-MM`.
    pub period: String,
    /// `open` or `closed`.
    pub status: String,
    /// The ledger entries counted were created in `[covers_from, covers_until)` (absent
    /// `covers_from`: since the beginning).
    #[oai(nullable)]
    pub covers_from: Option<OffsetDateTime>,
    pub covers_until: OffsetDateTime,
    pub businesses: Vec<SettlementLineView>,
    /// What the operator funded: referral rewards and adjustments (their expiry included).
    pub operator_funded: Amount,
    /// Σ of the entries: Σ of the nets + `operator_funded`.
    pub total: Amount,
    pub entries: i64,
    pub transfers: Vec<TransferView>,
    #[oai(nullable)]
    pub closed_at: Option<OffsetDateTime>,
}

/// A closed period in the list.
#[derive(Debug, Object)]
pub struct PeriodSummary {
    pub period: String,
    pub status: String,
    pub operator_funded: Amount,
    pub total: Amount,
    pub entries: i64,
    #[oai(nullable)]
    pub closed_at: Option<OffsetDateTime>,
}

#[derive(Debug, Object)]
pub struct PeriodList {
    /// The open period first, then the closed ones, latest first.
    pub items: Vec<PeriodSummary>,
}

/// A business's own line of a period, and its transfer.
#[derive(Debug, Object)]
pub struct BusinessSettlementView {
    pub period: String,
    pub status: String,
    pub line: SettlementLineView,
    #[oai(nullable)]
    pub transfer: Option<TransferView>,
}

#[derive(Debug, Object)]
pub struct BusinessSettlementList {
    pub business_id: Uuid,
    /// The open period first, then the closed ones, latest first.
    pub items: Vec<BusinessSettlementView>,
}

#[derive(ResponseContent)]
pub enum StatementContent {
    Json(Json<Envelope<SettlementView>>),
    #[oai(content_type = "text/csv; charset=utf-8")]
    Csv(PlainText<String>),
}

#[derive(ApiResponse)]
pub enum StatementResponse {
    /// JSON, or CSV with `?format=csv`.
    #[oai(status = 200)]
    Ok(StatementContent),
}

#[derive(ResponseContent)]
pub enum BusinessStatementContent {
    Json(Json<Envelope<BusinessSettlementView>>),
    #[oai(content_type = "text/csv; charset=utf-8")]
    Csv(PlainText<String>),
}

#[derive(ApiResponse)]
pub enum BusinessStatementResponse {
    /// JSON, or CSV with `?format=csv` (the business's row only).
    #[oai(status = 200)]
    Ok(BusinessStatementContent),
}

fn period(value: &str) -> Result<Period, ApiError> {
    Period::parse(value).map_err(|e| ApiError::unprocessable("invalid_period", e.to_string()))
}

fn line_view(line: &Line<Uuid>, names: &HashMap<Uuid, String>) -> SettlementLineView {
    SettlementLineView {
        business_id: line.business_id,
        business_name: names.get(&line.business_id).cloned().unwrap_or_default(),
        issued: line.issued.into(),
        redeemed: line.redeemed.into(),
        expired: line.expired.into(),
        refunded: line.refunded.into(),
        net: line.net.into(),
    }
}

fn preview_transfer(t: &Transfer<Uuid>, names: &HashMap<Uuid, String>) -> TransferView {
    TransferView {
        id: None,
        business_id: t.business_id,
        business_name: names.get(&t.business_id).cloned().unwrap_or_default(),
        direction: t.direction.as_str().to_owned(),
        amount: t.amount.into(),
        paid_at: None,
    }
}

fn stored_transfer(t: StoredTransfer) -> TransferView {
    TransferView {
        id: Some(t.id),
        business_id: t.business_id,
        business_name: t.business_name,
        direction: t.direction,
        amount: t.amount.into(),
        paid_at: t.paid_at,
    }
}

async fn names(state: &AppState, preview: &Preview) -> sqlx::Result<HashMap<Uuid, String>> {
    let ids: Vec<Uuid> = preview
        .statement
        .lines
        .iter()
        .map(|l| l.business_id)
        .collect();
    Ok(businesses::get_many(&state.db, &ids)
        .await?
        .into_iter()
        .map(|b| (b.id, b.name))
        .collect())
}

fn preview_view(preview: &Preview, names: &HashMap<Uuid, String>) -> SettlementView {
    let s = &preview.statement;
    SettlementView {
        period: preview.period.to_string(),
        status: "open".to_owned(),
        covers_from: Some(preview.covers_from),
        covers_until: preview.covers_until,
        businesses: s.lines.iter().map(|l| line_view(l, names)).collect(),
        operator_funded: s.operator_funded.into(),
        total: s.total.into(),
        entries: s.entries,
        transfers: s
            .transfers
            .iter()
            .map(|t| preview_transfer(t, names))
            .collect(),
        closed_at: None,
    }
}

fn closed_view(closed: Closed) -> SettlementView {
    SettlementView {
        period: closed.period.period,
        status: "closed".to_owned(),
        covers_from: closed.period.covers_from,
        covers_until: closed.period.covers_until,
        businesses: closed
            .lines
            .into_iter()
            .map(|l| SettlementLineView {
                business_id: l.business_id,
                business_name: l.business_name,
                issued: l.issued.into(),
                redeemed: l.redeemed.into(),
                expired: l.expired.into(),
                refunded: l.refunded.into(),
                net: l.net.into(),
            })
            .collect(),
        operator_funded: closed.period.operator_funded.into(),
        total: closed.period.total.into(),
        entries: closed.period.entries,
        transfers: closed.transfers.into_iter().map(stored_transfer).collect(),
        closed_at: Some(closed.period.closed_at),
    }
}

/// The statement as CSV: one row per business, then the operator's and the total
/// (`domain::statement_csv`, which the statement e-mail uses too).
fn csv(view: &SettlementView) -> String {
    let rows = csv_rows(&view.businesses, &view.transfers);
    statement_csv::write(
        &view.period,
        &view.status,
        &rows,
        Some(statement_csv::Totals {
            operator_funded: view.operator_funded.0,
            total: view.total.0,
        }),
    )
}

/// One business's statement as CSV: its row only, without the coalition's totals.
fn business_csv(view: &BusinessSettlementView) -> String {
    let transfers: Vec<&TransferView> = view.transfer.iter().collect();
    let rows = csv_rows(std::slice::from_ref(&view.line), transfers);
    statement_csv::write(&view.period, &view.status, &rows, None)
}

fn csv_rows<'a>(
    lines: &'a [SettlementLineView],
    transfers: impl IntoIterator<Item = &'a TransferView> + Clone,
) -> Vec<statement_csv::Row<'a, Uuid>> {
    lines
        .iter()
        .map(|line| {
            let transfer = transfers
                .clone()
                .into_iter()
                .find(|t| t.business_id == line.business_id);
            statement_csv::Row {
                business_id: line.business_id,
                business_name: &line.business_name,
                issued: line.issued.0,
                redeemed: line.redeemed.0,
                expired: line.expired.0,
                refunded: line.refunded.0,
                net: line.net.0,
                transfer: transfer.map(|t| {
                    (
                        t.direction.as_str(),
                        t.amount.0,
                        t.paid_at.map(|p| p.to_string()),
                    )
                }),
            }
        })
        .collect()
}

impl SettlementApi {
    /// The period now is in, by the rules' clock.
    async fn current(&self) -> sqlx::Result<Period> {
        settlement::period_at(
            &self.state.db,
            self.state.clock.now(),
            self.state.timezone.name(),
        )
        .await
    }

    async fn view(
        &self,
        period: Period,
        business: Option<Uuid>,
    ) -> Result<SettlementView, ApiError> {
        let state = &self.state;
        if let Some(closed) = settlement::closed(&state.db, period, business).await? {
            return Ok(closed_view(closed));
        }
        let mut preview = settlement::preview(&state.db, period, state.timezone.name()).await?;
        if let Some(business) = business {
            preview
                .statement
                .lines
                .retain(|l| l.business_id == business);
            preview
                .statement
                .transfers
                .retain(|t| t.business_id == business);
        }
        let names = names(state, &preview).await?;
        let mut view = preview_view(&preview, &names);
        // As a closed statement lists them: by name.
        view.businesses.sort_by(|a, b| {
            (&a.business_name, a.business_id).cmp(&(&b.business_name, b.business_id))
        });
        view.transfers.sort_by(|a, b| {
            (&a.business_name, a.business_id).cmp(&(&b.business_name, b.business_id))
        });
        Ok(view)
    }

    async fn business_view(
        &self,
        period: Period,
        business_id: Uuid,
    ) -> Result<BusinessSettlementView, ApiError> {
        let mut view = self.view(period, Some(business_id)).await?;
        let line = match view.businesses.pop() {
            Some(line) => line,
            None => {
                let name = businesses::get(&self.state.db, business_id)
                    .await?
                    .map(|b| b.name)
                    .unwrap_or_default();
                SettlementLineView {
                    business_id,
                    business_name: name,
                    issued: Decimal::ZERO.into(),
                    redeemed: Decimal::ZERO.into(),
                    expired: Decimal::ZERO.into(),
                    refunded: Decimal::ZERO.into(),
                    net: Decimal::ZERO.into(),
                }
            }
        };
        Ok(BusinessSettlementView {
            period: view.period,
            status: view.status,
            line,
            transfer: view.transfers.pop(),
        })
    }
}

#[OpenApi(tag = "Tag::Settlement")]
impl SettlementApi {
    /// The open period (live) and every closed one.
    #[oai(path = "/admin/settlements", method = "get")]
    async fn list(&self, _operator: Operator) -> ApiResult<Json<Envelope<PeriodList>>, SIGNED_IN> {
        let current = self.view(self.current().await?, None).await?;
        let mut items = vec![PeriodSummary {
            period: current.period,
            status: current.status,
            operator_funded: current.operator_funded,
            total: current.total,
            entries: current.entries,
            closed_at: current.closed_at,
        }];
        for p in settlement::closed_periods(&self.state.db).await? {
            if p.period != items[0].period {
                items.push(PeriodSummary {
                    period: p.period,
                    status: "closed".to_owned(),
                    operator_funded: p.operator_funded.into(),
                    total: p.total.into(),
                    entries: p.entries,
                    closed_at: Some(p.closed_at),
                });
            }
        }
        Ok(Json(Envelope::new(PeriodList { items })))
    }

    /// A period: the open one as a live preview, a closed one as its statement.
    #[oai(path = "/admin/settlements/:period", method = "get")]
    async fn get(
        &self,
        _operator: Operator,
        period: Path<String>,
        format: Query<Option<String>>,
    ) -> ApiResult<StatementResponse, { SIGNED_IN | UNPROCESSABLE }> {
        let view = self.view(self::period(&period.0)?, None).await?;
        Ok(StatementResponse::Ok(match format.0.as_deref() {
            None | Some("json") => StatementContent::Json(Json(Envelope::new(view))),
            Some("csv") => StatementContent::Csv(PlainText(csv(&view))),
            Some(_) => {
                return Err(
                    ApiError::unprocessable("invalid_format", "format is `json` or `csv`").into(),
                );
            }
        }))
    }

    /// Close a period that has ended into its statement (superadmin; the `settlement` job
    /// does it on the 1st). Periods close in order, each once.
    #[oai(path = "/admin/settlements/:period/close", method = "post")]
    async fn close(
        &self,
        superadmin: Superadmin,
        period: Path<String>,
    ) -> ApiResult<Json<Envelope<SettlementView>>, { SIGNED_IN | CONFLICT | UNPROCESSABLE }> {
        let state = &self.state;
        let period = self::period(&period.0)?;
        let mut tx = state.db.begin().await?;
        let statement = settlement::close(
            &mut tx,
            period,
            state.timezone.name(),
            state.clock.now(),
            Some(superadmin.user_id()),
        )
        .await?
        .map_err(|refusal| match refusal {
            CloseRefusal::NotEnded(_) => {
                ApiError::conflict("period_not_ended", refusal.to_string())
            }
            CloseRefusal::AlreadyClosed(_) => {
                ApiError::conflict("period_closed", refusal.to_string())
            }
            other => ApiError::conflict("periods_close_in_order", other.to_string()),
        })?;
        // Each business's owners get its statement by e-mail, as when the job closes it.
        let mails =
            jobs::handlers::settlement::statement_mails(&mut tx, period, &statement).await?;
        audit::record(
            &mut *tx,
            superadmin.user_id(),
            Change::new("settlement.close", "settlement", period)
                .after_value(serde_json::json!({"period": period.to_string()})),
        )
        .await?;
        tx.commit().await?;
        jobs::outbox::relay_committed(&state.db, &state.queue, &mails, "statement e-mails").await;
        tracing::info!(%period, "settlement period closed by an operator");
        Ok(Json(Envelope::new(self.view(period, None).await?)))
    }

    /// Mark a transfer of a closed statement paid (superadmin), once.
    #[oai(
        path = "/admin/settlements/:period/transfers/:id/paid",
        method = "post"
    )]
    async fn paid(
        &self,
        superadmin: Superadmin,
        period: Path<String>,
        id: Path<Uuid>,
    ) -> ApiResult<
        Json<Envelope<TransferView>>,
        { SIGNED_IN | BAD_REQUEST | NOT_FOUND | CONFLICT | UNPROCESSABLE },
    > {
        let state = &self.state;
        let period = self::period(&period.0)?;
        let marked = settlement::mark_paid(&state.db, period, id.0, superadmin.user_id())
            .await?
            .map_err(|refusal| match refusal {
                PaidRefusal::NotFound => {
                    ApiError::not_found("transfer_not_found", refusal.to_string())
                }
                other => ApiError::conflict("transfer_paid", other.to_string()),
            })?;
        let view = stored_transfer(marked);
        audit::record(
            &state.db,
            superadmin.user_id(),
            Change::new("settlement.transfer_paid", "settlement_transfer", id.0).after(&view),
        )
        .await?;
        Ok(Json(Envelope::new(view)))
    }

    /// The caller's business's settlement: the open period, then every closed one (owners).
    #[oai(path = "/business/settlements", method = "get")]
    async fn business_list(
        &self,
        auth: Auth,
        business_id: Query<Option<Uuid>>,
    ) -> ApiResult<
        Json<Envelope<BusinessSettlementList>>,
        { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE },
    > {
        let (business_id, _) = acting_for(&self.state, &auth, business_id.0, Right::Manage).await?;
        let current = self.current().await?;
        let mut items = vec![self.business_view(current, business_id).await?];
        for line in settlement::lines_of_business(&self.state.db, business_id).await? {
            if line.period != items[0].period {
                items.push(
                    self.business_view(period(&line.period)?, business_id)
                        .await?,
                );
            }
        }
        Ok(Json(Envelope::new(BusinessSettlementList {
            business_id,
            items,
        })))
    }

    /// The caller's business's line and transfer of a period (owners), in JSON or, with
    /// `?format=csv`, as the CSV the monthly statement e-mail attaches.
    #[oai(path = "/business/settlements/:period", method = "get")]
    async fn business_get(
        &self,
        auth: Auth,
        period: Path<String>,
        business_id: Query<Option<Uuid>>,
        format: Query<Option<String>>,
    ) -> ApiResult<BusinessStatementResponse, { SIGNED_IN | BAD_REQUEST | UNPROCESSABLE }> {
        let (business_id, _) = acting_for(&self.state, &auth, business_id.0, Right::Manage).await?;
        let view = self
            .business_view(self::period(&period.0)?, business_id)
            .await?;
        Ok(BusinessStatementResponse::Ok(match format.0.as_deref() {
            None | Some("json") => BusinessStatementContent::Json(Json(Envelope::new(view))),
            // The file the monthly statement e-mail attaches.
            Some("csv") => BusinessStatementContent::Csv(PlainText(business_csv(&view))),
            Some(_) => {
                return Err(
                    ApiError::unprocessable("invalid_format", "format is `json` or `csv`").into(),
                );
            }
        }))
    }
}
