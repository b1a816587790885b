//! Lots of bonuses and their expiry (DESIGN.md "Expiry"): every credit a member can spend —
//! cashback, a bonus coupon, a referral reward, an operator's positive correction — is a lot
//! that expires a fixed number of days after it became spendable. Spending takes the oldest
//! lots first (FIFO); a refund's reversal takes back from the lot its purchase accrued; the
//! bonuses a refund gives back return to the lots the purchase spent.
//!
//! The ledger is the only record of money, so lots are not stored: [`replay`] walks a
//! member's ledger in order and says what is left of each lot. What is left of all lots less
//! what she owes (a balance taken below zero by a reversal) is always her balance, so
//! expiring what is left of a lot never takes her below what her other lots justify, and a
//! member in debt has nothing left to expire.

use rust_decimal::Decimal;
use std::{collections::HashMap, hash::Hash};
use time::{Duration, OffsetDateTime};

/// How long a lot lives once spendable (`KRUG_BONUS_EXPIRY_DAYS`; 0: for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryRule {
    pub days: u32,
}

impl ExpiryRule {
    /// When a lot that became spendable at `spendable_at` expires; `None`: never.
    pub fn expires_at(self, spendable_at: OffsetDateTime) -> Option<OffsetDateTime> {
        (self.days > 0).then(|| spendable_at + Duration::days(self.days.into()))
    }
}

/// How far ahead of a lot's expiry the member is told.
pub const NOTICE_AHEAD: Duration = Duration::days(14);

/// One ledger entry as it moves lots, in ledger order. Amounts are positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move<I> {
    /// A credit that is a lot of its own (`id`: its ledger entry), funded by `funder` (a
    /// business; `None`: the operator).
    Lot {
        id: I,
        funder: Option<I>,
        amount: Decimal,
        spendable_at: OffsetDateTime,
    },
    /// A debit taken from the oldest lots (a redemption, a negative correction). `purchase`:
    /// the purchase whose redemption it is, remembered so a refund can give it back.
    Spend {
        amount: Decimal,
        purchase: Option<I>,
    },
    /// A debit from one lot (a reversal of the purchase that accrued it, or the lot's own
    /// expiry); what the lot no longer holds is taken from the oldest lots instead.
    TakeBack { lot: Option<I>, amount: Decimal },
    /// Bonuses a refund gives back, returned to the lots `purchase` spent (the latest spent
    /// first). What cannot be placed there (nothing recorded) is a lot of its own, `id`.
    GiveBack {
        id: I,
        funder: Option<I>,
        purchase: Option<I>,
        amount: Decimal,
        at: OffsetDateTime,
    },
}

/// A lot as the ledger leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot<I> {
    pub id: I,
    pub funder: Option<I>,
    pub spendable_at: OffsetDateTime,
    /// `None`: it never expires.
    pub expires_at: Option<OffsetDateTime>,
    /// Not yet spent, taken back or expired.
    pub left: Decimal,
}

/// A member's lots after her ledger, oldest first, and what she owes beyond them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lots<I> {
    pub lots: Vec<Lot<I>>,
    /// Positive when her balance is below zero: Σ left − owed = balance.
    pub owed: Decimal,
}

/// Walks a member's ledger (in the order it was written) into her lots.
pub fn replay<I: Copy + Eq + Hash>(moves: &[Move<I>], rule: ExpiryRule) -> Lots<I> {
    let mut book = Book {
        rule,
        lots: Vec::new(),
        index: HashMap::new(),
        spent_by: HashMap::new(),
        owed: Decimal::ZERO,
    };
    for m in moves {
        match *m {
            Move::Lot {
                id,
                funder,
                amount,
                spendable_at,
            } => {
                let left = book.repay(amount);
                book.open(id, funder, left, spendable_at);
            }
            Move::Spend { amount, purchase } => {
                let taken = book.spend(amount);
                if let Some(p) = purchase {
                    book.spent_by.entry(p).or_default().extend(taken);
                }
            }
            Move::TakeBack { lot, amount } => {
                let from_lot = match lot.and_then(|l| book.index.get(&l).copied()) {
                    Some(i) => {
                        let take = book.lots[i].left.min(amount);
                        book.lots[i].left -= take;
                        take
                    }
                    None => Decimal::ZERO,
                };
                book.spend(amount - from_lot);
            }
            Move::GiveBack {
                id,
                funder,
                purchase,
                amount,
                at,
            } => {
                let mut rest = book.repay(amount);
                if let Some(spent) = purchase.and_then(|p| book.spent_by.get_mut(&p)) {
                    while rest > Decimal::ZERO {
                        let Some((i, took)) = spent.pop() else { break };
                        let back = took.min(rest);
                        book.lots[i].left += back;
                        rest -= back;
                        if back < took {
                            spent.push((i, took - back));
                        }
                    }
                }
                if rest > Decimal::ZERO {
                    book.open(id, funder, rest, at);
                }
            }
        }
    }
    Lots {
        lots: book.lots,
        owed: book.owed,
    }
}

/// [`replay`]'s working state.
struct Book<I> {
    rule: ExpiryRule,
    lots: Vec<Lot<I>>,
    /// Lot id → its place in `lots`.
    index: HashMap<I, usize>,
    /// Purchase → the lots its redemption took from, in the order taken.
    spent_by: HashMap<I, Vec<(usize, Decimal)>>,
    owed: Decimal,
}

impl<I: Copy + Eq + Hash> Book<I> {
    /// What a credit brings pays what she owes first; returns the rest.
    fn repay(&mut self, amount: Decimal) -> Decimal {
        let paid = amount.min(self.owed);
        self.owed -= paid;
        amount - paid
    }

    fn open(&mut self, id: I, funder: Option<I>, left: Decimal, spendable_at: OffsetDateTime) {
        self.index.insert(id, self.lots.len());
        self.lots.push(Lot {
            id,
            funder,
            spendable_at,
            expires_at: self.rule.expires_at(spendable_at),
            left,
        });
    }

    /// Takes `amount` from the oldest lots; what they lack is owed. Returns what it took.
    fn spend(&mut self, mut amount: Decimal) -> Vec<(usize, Decimal)> {
        let mut taken = Vec::new();
        for (i, lot) in self.lots.iter_mut().enumerate() {
            if amount.is_zero() {
                break;
            }
            let take = lot.left.min(amount);
            if take > Decimal::ZERO {
                lot.left -= take;
                amount -= take;
                taken.push((i, take));
            }
        }
        self.owed += amount;
        taken
    }
}

impl<I: Copy> Lots<I> {
    /// Lots whose time has come by `now` with something left: each expires what is left.
    pub fn due(&self, now: OffsetDateTime) -> impl Iterator<Item = &Lot<I>> {
        self.lots
            .iter()
            .filter(move |l| l.left > Decimal::ZERO && l.expires_at.is_some_and(|at| at <= now))
    }

    /// Lots with something left that expire after `now` but within [`NOTICE_AHEAD`].
    pub fn expiring_soon(&self, now: OffsetDateTime) -> impl Iterator<Item = &Lot<I>> {
        self.lots.iter().filter(move |l| {
            l.left > Decimal::ZERO
                && l.expires_at
                    .is_some_and(|at| at > now && at <= now + NOTICE_AHEAD)
        })
    }

    /// The next lot to expire with something left: what is left of it and when.
    pub fn next_expiring(&self) -> Option<(Decimal, OffsetDateTime)> {
        self.lots
            .iter()
            .filter(|l| l.left > Decimal::ZERO)
            .filter_map(|l| l.expires_at.map(|at| (l.left, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// Σ left − owed: the balance the lots justify.
    pub fn balance(&self) -> Decimal {
        self.lots.iter().map(|l| l.left).sum::<Decimal>() - self.owed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const YEAR: ExpiryRule = ExpiryRule { days: 365 };

    fn day(n: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000 + n)
    }

    fn lot(id: u32, amount: Decimal, on: i64) -> Move<u32> {
        Move::Lot {
            id,
            funder: Some(100 + id),
            amount,
            spendable_at: day(on),
        }
    }

    fn left(lots: &Lots<u32>) -> Vec<(u32, Decimal)> {
        lots.lots.iter().map(|l| (l.id, l.left)).collect()
    }

    #[test]
    fn spending_takes_the_oldest_lots_first() {
        let lots = replay(
            &[
                lot(1, dec!(100), 0),
                lot(2, dec!(50), 10),
                lot(3, dec!(30), 20),
                Move::Spend {
                    amount: dec!(120),
                    purchase: Some(9),
                },
            ],
            YEAR,
        );
        assert_eq!(left(&lots), [(1, dec!(0)), (2, dec!(30)), (3, dec!(30))]);
        assert_eq!(lots.balance(), dec!(60));
        assert_eq!(lots.next_expiring(), Some((dec!(30), day(375))));
    }

    #[test]
    fn a_reversal_takes_back_from_its_own_lot_then_from_the_oldest() {
        let lots = replay(
            &[
                lot(1, dec!(100), 0),
                lot(2, dec!(40), 5),
                Move::Spend {
                    amount: dec!(120),
                    purchase: None,
                },
                // Lot 2 holds 20; its purchase's refund takes back 30.
                Move::TakeBack {
                    lot: Some(2),
                    amount: dec!(30),
                },
            ],
            YEAR,
        );
        assert_eq!(left(&lots), [(1, dec!(0)), (2, dec!(0))]);
        assert_eq!(lots.owed, dec!(10), "the balance went below zero");
        assert_eq!(lots.balance(), dec!(-10));
        assert_eq!(lots.due(day(400)).count(), 0, "nothing left to expire");
    }

    #[test]
    fn a_credit_repays_what_is_owed_before_it_is_a_lot() {
        let lots = replay(
            &[
                Move::TakeBack {
                    lot: None,
                    amount: dec!(25),
                },
                lot(1, dec!(100), 3),
            ],
            YEAR,
        );
        assert_eq!(left(&lots), [(1, dec!(75))]);
        assert_eq!(lots.balance(), dec!(75));
        let due: Vec<_> = lots.due(day(368)).map(|l| (l.id, l.left)).collect();
        assert_eq!(
            due,
            [(1, dec!(75))],
            "only what the balance justifies expires"
        );
    }

    #[test]
    fn bonuses_given_back_return_to_the_lots_their_purchase_spent() {
        let lots = replay(
            &[
                lot(1, dec!(100), 0),
                lot(2, dec!(100), 100),
                Move::Spend {
                    amount: dec!(150),
                    purchase: Some(7),
                },
                Move::GiveBack {
                    id: 8,
                    funder: Some(200),
                    purchase: Some(7),
                    amount: dec!(60),
                    at: day(120),
                },
            ],
            YEAR,
        );
        // Lot 2 gave 50 last, so it gets 50 back first; lot 1 the other 10.
        assert_eq!(left(&lots), [(1, dec!(10)), (2, dec!(100))]);
        assert_eq!(lots.balance(), dec!(110));
    }

    #[test]
    fn an_expiry_empties_its_lot_so_a_second_run_finds_nothing() {
        let mut moves = vec![lot(1, dec!(80), 0), lot(2, dec!(20), 200)];
        let first = replay(&moves, YEAR);
        let due: Vec<_> = first.due(day(365)).map(|l| (l.id, l.left)).collect();
        assert_eq!(due, [(1, dec!(80))]);
        moves.push(Move::TakeBack {
            lot: Some(1),
            amount: dec!(80),
        });
        let again = replay(&moves, YEAR);
        assert_eq!(again.due(day(365)).count(), 0);
        assert_eq!(again.balance(), dec!(20));
    }

    #[test]
    fn the_notice_window_is_the_fortnight_before_expiry() {
        let lots = replay(&[lot(1, dec!(10), 0), lot(2, dec!(10), 30)], YEAR);
        let soon: Vec<_> = lots.expiring_soon(day(351)).map(|l| l.id).collect();
        assert_eq!(soon, [1]);
        assert_eq!(lots.expiring_soon(day(350)).count(), 0, "15 days ahead");
        assert_eq!(
            lots.expiring_soon(day(365)).count(),
            0,
            "expired, not expiring"
        );
    }

    #[test]
    fn zero_days_means_lots_never_expire() {
        let lots = replay(&[lot(1, dec!(10), 0)], ExpiryRule { days: 0 });
        assert_eq!(lots.due(day(10_000)).count(), 0);
        assert_eq!(lots.next_expiring(), None);
    }

    #[test]
    fn lots_always_add_up_to_the_balance() {
        // Σ of the moves, signed, whatever their mix.
        let moves = vec![
            lot(1, dec!(33.33), 0),
            Move::Spend {
                amount: dec!(50.01),
                purchase: Some(5),
            },
            lot(2, dec!(10.10), 1),
            Move::TakeBack {
                lot: Some(1),
                amount: dec!(3.33),
            },
            Move::GiveBack {
                id: 6,
                funder: None,
                purchase: Some(5),
                amount: dec!(20.00),
                at: day(2),
            },
            lot(3, dec!(0.99), 3),
            Move::Spend {
                amount: dec!(7.77),
                purchase: None,
            },
        ];
        let signed = |moves: &[Move<u32>]| -> Decimal {
            moves
                .iter()
                .map(|m| match m {
                    Move::Lot { amount, .. } | Move::GiveBack { amount, .. } => *amount,
                    Move::Spend { amount, .. } | Move::TakeBack { amount, .. } => -*amount,
                })
                .sum()
        };
        for n in 0..=moves.len() {
            let lots = replay(&moves[..n], YEAR);
            let signed = signed(&moves[..n]);
            assert_eq!(lots.balance(), signed, "after {n} moves");
            assert!(lots.owed.is_zero() || lots.lots.iter().all(|l| l.left.is_zero()));
        }
    }
}
