//! Settlement between partners (DESIGN.md "Settlement"): who owes whom for a period's bonuses.
//!
//! Every ledger entry is funded by one business or by the coalition operator. Per business,
//! `net = issued − refunded − expired − redeemed` is the sum of its entries: positive, the
//! business pays the operator (its members earned more than they spent there); negative, the
//! operator pays the business. Entries no business funds (referral rewards, operators'
//! adjustments, the expiry of what they funded) are the operator's. So the books balance to
//! the kopeck by construction: Σ nets + what the operator funded = Σ of the period's entries.

use crate::loyalty::EntryKind;
use rust_decimal::Decimal;
use std::{collections::BTreeMap, fmt, str::FromStr};
use time::{Date, Month};

/// A settlement period: a calendar month (`YYYY-MM`) in the coalition's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: i32,
    month: Month,
}

/// Not a `YYYY-MM` month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a period is a month written YYYY-MM, e.g. 2026-12")]
pub struct InvalidPeriod;

impl Period {
    pub fn parse(s: &str) -> Result<Self, InvalidPeriod> {
        let (year, month) = s.split_once('-').ok_or(InvalidPeriod)?;
        if year.len() != 4 || month.len() != 2 || !year.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidPeriod);
        }
        let year: i32 = year.parse().map_err(|_| InvalidPeriod)?;
        let month: u8 = month.parse().map_err(|_| InvalidPeriod)?;
        let month = Month::try_from(month).map_err(|_| InvalidPeriod)?;
        if year < 2000 {
            return Err(InvalidPeriod);
        }
        Ok(Self { year, month })
    }

    /// The month a date falls in.
    pub fn of(date: Date) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> Month {
        self.month
    }

    /// Its first day.
    pub fn first_day(self) -> Date {
        Date::from_calendar_date(self.year, self.month, 1).expect("the first of a month exists")
    }

    pub fn next(self) -> Self {
        match self.month {
            Month::December => Self {
                year: self.year + 1,
                month: Month::January,
            },
            m => Self {
                year: self.year,
                month: m.next(),
            },
        }
    }

    pub fn previous(self) -> Self {
        match self.month {
            Month::January => Self {
                year: self.year - 1,
                month: Month::December,
            },
            m => Self {
                year: self.year,
                month: m.previous(),
            },
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, u8::from(self.month))
    }
}

impl FromStr for Period {
    type Err = InvalidPeriod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// One business's part of a period. Amounts are positive as named; `net` is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<B> {
    pub business_id: B,
    /// Cashback accrued there and bonus coupons it funded (less what was corrected).
    pub issued: Decimal,
    /// Bonuses spent at its counter (less what refunds gave back).
    pub redeemed: Decimal,
    /// Bonuses it funded that expired unspent.
    pub expired: Decimal,
    /// Cashback taken back by refunds of its purchases.
    pub refunded: Decimal,
    /// `issued − refunded − expired − redeemed`: positive, the business pays the operator.
    pub net: Decimal,
}

impl<B> Line<B> {
    fn new(business_id: B) -> Self {
        Self {
            business_id,
            issued: Decimal::ZERO,
            redeemed: Decimal::ZERO,
            expired: Decimal::ZERO,
            refunded: Decimal::ZERO,
            net: Decimal::ZERO,
        }
    }

    /// Adds the entries of one ledger kind (their signed sum).
    fn add(&mut self, kind: EntryKind, sum: Decimal) {
        match kind {
            EntryKind::Redemption => self.redeemed -= sum,
            EntryKind::Reversal => self.refunded -= sum,
            EntryKind::Expiry => self.expired -= sum,
            // An accrual, a bonus coupon's adjustment: anything else a business funds.
            EntryKind::Accrual | EntryKind::Adjustment | EntryKind::Referral => self.issued += sum,
        }
        self.net += sum;
    }
}

/// Which way a transfer goes; the operator is always one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The business pays the operator (a positive net).
    ToOperator,
    /// The operator pays the business (a negative net).
    ToBusiness,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToOperator => "to_operator",
            Self::ToBusiness => "to_business",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer<B> {
    pub business_id: B,
    pub direction: Direction,
    /// Positive.
    pub amount: Decimal,
}

/// A period's settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<B> {
    /// One per business with entries, in business order.
    pub lines: Vec<Line<B>>,
    /// Σ of the entries no business funds (referrals, adjustments, their expiry).
    pub operator_funded: Decimal,
    /// Σ of all the period's entries: Σ nets + `operator_funded`.
    pub total: Decimal,
    /// How many entries.
    pub entries: i64,
    /// One per business whose net is not zero, through the operator.
    pub transfers: Vec<Transfer<B>>,
}

/// One group of a period's ledger entries: who funds them (`None`: the operator), their
/// kind, their signed sum and their number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSum<B> {
    pub business_id: Option<B>,
    pub kind: EntryKind,
    pub sum: Decimal,
    pub count: i64,
}

/// The statement of a period's entries, grouped by funder and kind.
pub fn statement<B: Ord + Copy>(sums: impl IntoIterator<Item = KindSum<B>>) -> Statement<B> {
    let mut lines: BTreeMap<B, Line<B>> = BTreeMap::new();
    let mut operator_funded = Decimal::ZERO;
    let mut total = Decimal::ZERO;
    let mut entries = 0;
    for s in sums {
        total += s.sum;
        entries += s.count;
        match s.business_id {
            Some(b) => lines
                .entry(b)
                .or_insert_with(|| Line::new(b))
                .add(s.kind, s.sum),
            None => operator_funded += s.sum,
        }
    }
    let lines: Vec<Line<B>> = lines.into_values().collect();
    let transfers = lines
        .iter()
        .filter(|l| !l.net.is_zero())
        .map(|l| Transfer {
            business_id: l.business_id,
            direction: if l.net > Decimal::ZERO {
                Direction::ToOperator
            } else {
                Direction::ToBusiness
            },
            amount: l.net.abs(),
        })
        .collect();
    Statement {
        lines,
        operator_funded,
        total,
        entries,
        transfers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn sum(business: Option<u8>, kind: &str, sum: Decimal) -> KindSum<u8> {
        KindSum {
            business_id: business,
            kind: kind.parse().unwrap(),
            sum,
            count: 1,
        }
    }

    #[test]
    fn periods_parse_print_and_step_over_the_year() {
        let p = Period::parse("2026-12").unwrap();
        assert_eq!(p.to_string(), "2026-12");
        assert_eq!(p.next().to_string(), "2027-01");
        assert_eq!(p.next().previous(), p);
        assert_eq!(Period::parse("2027-01").unwrap().previous(), p);
        assert_eq!(
            p.first_day(),
            Date::from_calendar_date(2026, Month::December, 1).unwrap()
        );
        for bad in [
            "2026-13", "2026-00", "26-12", "2026-1", "2026/12", "", "abcd-ef", "1999-01",
        ] {
            assert_eq!(Period::parse(bad), Err(InvalidPeriod), "{bad}");
        }
    }

    #[test]
    fn nets_follow_the_formula_and_the_books_balance() {
        // Business 1: 100 earned, 10 taken back by a refund, 5 expired; 30 spent there.
        // Business 2: 40 earned, 80 spent there, 20 of them given back by a refund; a
        // 50 bonus coupon it funded. The operator: a 300 referral and a −7 correction.
        let s = statement([
            sum(Some(1), "accrual", dec!(100)),
            sum(Some(1), "reversal", dec!(-10)),
            sum(Some(1), "expiry", dec!(-5)),
            sum(Some(1), "redemption", dec!(-30)),
            sum(Some(2), "accrual", dec!(40)),
            sum(Some(2), "redemption", dec!(-60)),
            sum(Some(2), "adjustment", dec!(50)),
            sum(None, "referral", dec!(300)),
            sum(None, "adjustment", dec!(-7)),
        ]);
        let one = &s.lines[0];
        assert_eq!(
            (one.issued, one.refunded, one.expired, one.redeemed, one.net),
            (dec!(100), dec!(10), dec!(5), dec!(30), dec!(55))
        );
        let two = &s.lines[1];
        assert_eq!(
            (two.issued, two.redeemed, two.net),
            (dec!(90), dec!(60), dec!(30))
        );
        for l in &s.lines {
            assert_eq!(l.net, l.issued - l.refunded - l.expired - l.redeemed);
        }
        assert_eq!(s.operator_funded, dec!(293));
        assert_eq!(s.total, dec!(378));
        assert_eq!(
            s.lines.iter().map(|l| l.net).sum::<Decimal>() + s.operator_funded,
            s.total
        );
        assert_eq!(s.entries, 9);
    }

    #[test]
    fn transfers_go_through_the_operator_by_the_sign_of_the_net() {
        let s = statement([
            sum(Some(1), "accrual", dec!(100)),
            sum(Some(2), "redemption", dec!(-70.50)),
            sum(Some(3), "accrual", dec!(10)),
            sum(Some(3), "redemption", dec!(-10)),
        ]);
        assert_eq!(
            s.transfers,
            [
                Transfer {
                    business_id: 1,
                    direction: Direction::ToOperator,
                    amount: dec!(100)
                },
                Transfer {
                    business_id: 2,
                    direction: Direction::ToBusiness,
                    amount: dec!(70.50)
                },
            ],
            "a business whose net is zero has no transfer"
        );
        assert_eq!(s.lines.len(), 3);
    }
}
