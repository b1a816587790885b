//! What we tell members, in Russian, and when we may tell them.

use crate::Tier;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::{Duration, PrimitiveDateTime, Time};

/// A message to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    BonusAccrued {
        amount: Decimal,
        /// The business's name; absent for a medical business (medical secrecy: a push or an
        /// SMS is read by whoever holds the phone, so it never says where she was treated).
        #[serde(default)]
        business: Option<String>,
        balance: Decimal,
    },
    /// Cashback that waits out the business's hold before it can be spent.
    BonusPending {
        amount: Decimal,
        /// Absent for a medical business, as for [`Message::BonusAccrued`].
        #[serde(default)]
        business: Option<String>,
        /// `DD.MM.YYYY`.
        available: String,
    },
    /// Held cashback that can be spent now.
    BonusReleased {
        amount: Decimal,
        balance: Decimal,
    },
    /// Bonuses that expire soon unless spent.
    BonusExpiring {
        amount: Decimal,
        /// `DD.MM.YYYY`.
        date: String,
    },
    TierUpgraded {
        tier: Tier,
    },
    TierDowngraded {
        tier: Tier,
    },
    /// `discount` as the member reads it: `15 %`, `500 ₽`, `300 бонусов`.
    CouponIssued {
        business: String,
        discount: String,
        code: String,
        expires: String,
    },
    EventReminder {
        title: String,
        when: String,
        location: String,
    },
}

impl Message {
    /// The template name recorded with each send.
    pub fn template(&self) -> &'static str {
        match self {
            Self::BonusAccrued { .. } => "bonus_accrued",
            Self::BonusPending { .. } => "bonus_pending",
            Self::BonusReleased { .. } => "bonus_released",
            Self::BonusExpiring { .. } => "bonus_expiring",
            Self::TierUpgraded { .. } => "tier_upgraded",
            Self::TierDowngraded { .. } => "tier_downgraded",
            Self::CouponIssued { .. } => "coupon_issued",
            Self::EventReminder { .. } => "event_reminder",
        }
    }

    /// Marketing (offers) is sent only on channels the member consented to
    /// (`/users/me/settings`). News about her own account, and reminders of events she
    /// registered for, are not offers.
    pub fn is_marketing(&self) -> bool {
        matches!(self, Self::CouponIssued { .. })
    }

    /// Marketing, reminders and the notices the hourly `expire` job sends (bonuses
    /// released, bonuses expiring) wait for the end of quiet hours; news of what the member
    /// just did does not.
    pub fn waits_for_quiet_hours(&self) -> bool {
        self.is_marketing()
            || matches!(
                self,
                Self::EventReminder { .. }
                    | Self::BonusReleased { .. }
                    | Self::BonusExpiring { .. }
            )
    }

    /// Title and body.
    pub fn render(&self) -> (String, String) {
        match self {
            Self::BonusAccrued {
                amount,
                business,
                balance,
            } => (
                "Бонусы начислены".to_owned(),
                match business {
                    Some(business) => {
                        format!("+{amount} бонусов за покупку в «{business}». На счёте {balance}.")
                    }
                    None => format!("+{amount} бонусов начислено. На счёте {balance}."),
                },
            ),
            Self::BonusPending {
                amount,
                business,
                available,
            } => (
                "Бонусы начислены".to_owned(),
                match business {
                    Some(business) => format!(
                        "+{amount} бонусов за покупку в «{business}». Их можно будет тратить с {available}."
                    ),
                    None => format!(
                        "+{amount} бонусов начислено. Их можно будет тратить с {available}."
                    ),
                },
            ),
            Self::BonusReleased { amount, balance } => (
                "Бонусы доступны".to_owned(),
                format!("{amount} бонусов теперь можно тратить. На счёте {balance}."),
            ),
            Self::BonusExpiring { amount, date } => (
                "Бонусы сгорают".to_owned(),
                format!("{amount} бонусов сгорят {date}. Потратьте их у партнёров Своего Круга."),
            ),
            Self::TierUpgraded { tier } => (
                "Новый статус".to_owned(),
                format!(
                    "Поздравляем! Ваш статус теперь {tier}: бонусы начисляются с повышенным коэффициентом."
                ),
            ),
            Self::TierDowngraded { tier } => (
                "Статус изменён".to_owned(),
                format!(
                    "Ваш статус теперь {tier}. Покупки у партнёров Своего Круга вернут прежний."
                ),
            ),
            Self::CouponIssued {
                business,
                discount,
                code,
                expires,
            } => (
                "Купон для вас".to_owned(),
                format!("{discount} в «{business}» по купону {code}. Действует до {expires}."),
            ),
            Self::EventReminder {
                title,
                when,
                location,
            } => (
                "Завтра: событие Своего Круга".to_owned(),
                format!("«{title}» — {when}, {location}. Ждём вас!"),
            ),
        }
    }
}

/// A date as members read it: `DD.MM.YYYY`.
pub fn russian_date(date: time::Date) -> String {
    format!(
        "{:02}.{:02}.{}",
        date.day(),
        date.month() as u8,
        date.year()
    )
}

/// Quiet hours for marketing: 22:00 to 09:00 local time.
pub const QUIET_FROM: Time = time::macros::time!(22:00);
pub const QUIET_UNTIL: Time = time::macros::time!(09:00);

/// When quiet hours end, if `local` falls inside them.
pub fn quiet_hours_end(local: PrimitiveDateTime) -> Option<PrimitiveDateTime> {
    let time = local.time();
    if time >= QUIET_FROM {
        Some(PrimitiveDateTime::new(
            local.date() + Duration::days(1),
            QUIET_UNTIL,
        ))
    } else if time < QUIET_UNTIL {
        Some(PrimitiveDateTime::new(local.date(), QUIET_UNTIL))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn quiet_hours_run_from_ten_at_night_to_nine_in_the_morning() {
        assert_eq!(quiet_hours_end(datetime!(2026-11-25 21:59:59)), None);
        assert_eq!(
            quiet_hours_end(datetime!(2026-11-25 22:00)),
            Some(datetime!(2026-11-26 09:00))
        );
        assert_eq!(
            quiet_hours_end(datetime!(2026-11-25 23:30)),
            Some(datetime!(2026-11-26 09:00))
        );
        assert_eq!(
            quiet_hours_end(datetime!(2026-11-26 03:00)),
            Some(datetime!(2026-11-26 09:00))
        );
        assert_eq!(quiet_hours_end(datetime!(2026-11-26 09:00)), None);
    }

    #[test]
    fn marketing_is_told_apart_and_rendered_in_russian() {
        let coupon = Message::CouponIssued {
            business: "Лисичкино".into(),
            discount: "15 %".into(),
            code: "K7M2Q9".into(),
            expires: "10.12.2026".into(),
        };
        assert!(coupon.is_marketing());
        assert_eq!(coupon.template(), "coupon_issued");
        let (title, body) = coupon.render();
        assert_eq!(title, "Купон для вас");
        assert!(
            body.contains("15 % в «Лисичкино» по купону K7M2Q9"),
            "{body}"
        );
        assert!(!Message::TierUpgraded { tier: Tier::Vip }.is_marketing());
        let reminder = Message::EventReminder {
            title: "Дегустация".into(),
            when: "26.11.2026 19:00".into(),
            location: "Лисичкино".into(),
        };
        assert!(!reminder.is_marketing(), "she asked for it by registering");
        assert!(reminder.waits_for_quiet_hours());
        assert!(coupon.waits_for_quiet_hours());
    }

    #[test]
    fn an_accrual_without_a_business_name_says_only_the_bonuses() {
        let (_, named) = Message::BonusAccrued {
            amount: Decimal::new(12000, 2),
            business: Some("Миндаль".into()),
            balance: Decimal::new(50000, 2),
        }
        .render();
        assert_eq!(
            named,
            "+120.00 бонусов за покупку в «Миндаль». На счёте 500.00."
        );
        let (_, anonymous) = Message::BonusAccrued {
            amount: Decimal::new(12000, 2),
            business: None,
            balance: Decimal::new(50000, 2),
        }
        .render();
        assert_eq!(anonymous, "+120.00 бонусов начислено. На счёте 500.00.");
    }

    #[test]
    fn a_pending_accrual_says_when_and_names_no_medical_business() {
        let (_, anonymous) = Message::BonusPending {
            amount: Decimal::new(12000, 2),
            business: None,
            available: russian_date(time::macros::date!(2026 - 12 - 16)),
        }
        .render();
        assert_eq!(
            anonymous,
            "+120.00 бонусов начислено. Их можно будет тратить с 16.12.2026."
        );
    }
}
