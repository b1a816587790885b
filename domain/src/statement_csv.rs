//! A settlement statement as CSV, for accountants: what `GET /admin/settlements/{period}
//! ?format=csv` answers, `GET /business/settlements/{period}?format=csv` answers for one
//! business, and the monthly statement e-mail attaches. One writer, so that the three never
//! drift apart.
//!
//! Columns: `period,status,business_id,business_name,issued,redeemed,expired,refunded,net,
//! transfer_direction,transfer_amount,paid_at`; one row per business, then (for the whole
//! coalition only) the operator's row and the total. A business's own statement leaves
//! those two out: they are the coalition's figures, not its own.

use rust_decimal::Decimal;
use std::fmt::{Display, Write};

/// The header row.
pub const HEADER: &str = "period,status,business_id,business_name,issued,redeemed,expired,refunded,net,transfer_direction,transfer_amount,paid_at\n";

/// One business's row.
#[derive(Debug, Clone)]
pub struct Row<'a, B> {
    pub business_id: B,
    pub business_name: &'a str,
    pub issued: Decimal,
    pub redeemed: Decimal,
    pub expired: Decimal,
    pub refunded: Decimal,
    pub net: Decimal,
    /// `(direction, amount, paid_at)` of its transfer, if it has one.
    pub transfer: Option<(&'a str, Decimal, Option<String>)>,
}

/// The coalition's rows after the businesses': what the operator funded, and the total.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    pub operator_funded: Decimal,
    pub total: Decimal,
}

fn money(a: Decimal) -> String {
    format!("{a:.2}")
}

/// The statement of `period` (its `status`: `open` or `closed`) as CSV.
pub fn write<B: Display>(
    period: &str,
    status: &str,
    rows: &[Row<'_, B>],
    totals: Option<Totals>,
) -> String {
    let mut out = String::from(HEADER);
    for line in rows {
        let name = line.business_name.replace('"', "\"\"");
        let transfer = line.transfer.as_ref();
        let _ = writeln!(
            out,
            "{period},{status},{},\"{name}\",{},{},{},{},{},{},{},{}",
            line.business_id,
            money(line.issued),
            money(line.redeemed),
            money(line.expired),
            money(line.refunded),
            money(line.net),
            transfer.map_or("", |t| t.0),
            transfer.map_or(String::new(), |t| money(t.1)),
            transfer.and_then(|t| t.2.clone()).unwrap_or_default(),
        );
    }
    if let Some(totals) = totals {
        let _ = writeln!(
            out,
            "{period},{status},,\"operator\",{},,,,{},,,",
            money(totals.operator_funded),
            money(totals.operator_funded)
        );
        let _ = writeln!(
            out,
            "{period},{status},,\"total\",,,,,{},,,",
            money(totals.total)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn row(name: &str) -> Row<'_, u32> {
        Row {
            business_id: 7,
            business_name: name,
            issued: dec!(400),
            redeemed: dec!(0),
            expired: dec!(0),
            refunded: dec!(50),
            net: dec!(350),
            transfer: Some(("to_operator", dec!(350), None)),
        }
    }

    #[test]
    fn a_business_statement_has_its_row_and_no_coalition_totals() {
        let csv = write("2026-11", "closed", &[row("Миндаль")], None);
        assert_eq!(
            csv,
            format!(
                "{HEADER}2026-11,closed,7,\"Миндаль\",400.00,0.00,0.00,50.00,350.00,to_operator,350.00,\n"
            )
        );
    }

    #[test]
    fn the_coalition_statement_ends_with_the_operator_and_the_total() {
        let totals = Totals {
            operator_funded: dec!(300),
            total: dec!(650),
        };
        let csv = write("2026-11", "open", &[row("Кафе \"Ромашка\"")], Some(totals));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert!(
            lines[1].contains("\"Кафе \"\"Ромашка\"\"\""),
            "quotes doubled: {csv}"
        );
        assert_eq!(lines[2], "2026-11,open,,\"operator\",300.00,,,,300.00,,,");
        assert_eq!(lines[3], "2026-11,open,,\"total\",,,,,650.00,,,");
    }
}
