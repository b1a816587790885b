//! The coalition as it starts: the five partner businesses of DESIGN.md.

use anyhow::Context;
use domain::{Category, loyalty::DiscountType};
use jobs::JobQueue;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::PgPool;
use storage::businesses::{self, Business, NewBusiness};

/// A partner: name, category, cashback %, medical.
pub struct Partner {
    pub name: &'static str,
    pub category: Category,
    pub cashback_percent: Decimal,
    pub is_medical: bool,
}

pub const PARTNERS: [Partner; 5] = [
    Partner {
        name: "Миндаль",
        category: Category::Beauty,
        cashback_percent: dec!(5),
        is_medical: false,
    },
    Partner {
        name: "Лисичкино",
        category: Category::Gastronomy,
        cashback_percent: dec!(3),
        is_medical: false,
    },
    Partner {
        name: "Skinerica",
        category: Category::Beauty,
        cashback_percent: dec!(7),
        is_medical: false,
    },
    Partner {
        name: "Стим Центр",
        category: Category::Wellness,
        cashback_percent: dec!(5),
        // A wellness centre with medical services: covered by medical secrecy (DESIGN.md).
        is_medical: true,
    },
    Partner {
        name: "Миллениум",
        category: Category::Health,
        cashback_percent: dec!(4),
        is_medical: true,
    },
];

/// Creates the partners that do not exist yet (by name) and returns all five. A partner
/// seeded by an older version without its medical flag gets it (and its analytics facts
/// are purged), as an operator setting the flag would.
pub async fn partners(db: &PgPool, queue: &JobQueue) -> anyhow::Result<Vec<Business>> {
    let existing = businesses::list_active(db).await?;
    let mut out = Vec::new();
    for partner in &PARTNERS {
        if let Some(found) = existing.iter().find(|b| b.name == partner.name) {
            if partner.is_medical && !found.is_medical {
                out.push(flag_medical(db, queue, found.id).await?);
            } else {
                out.push(found.clone());
            }
            continue;
        }
        out.push(
            businesses::create(
                db,
                &NewBusiness {
                    name: partner.name.to_owned(),
                    category: partner.category,
                    cashback_percent: partner.cashback_percent,
                    max_redeem_percent: dec!(30),
                    max_check_amount: businesses::DEFAULT_MAX_CHECK_AMOUNT,
                    is_medical: partner.is_medical,
                    bonus_hold_days: 0,
                    staff_refund_limit: storage::businesses::DEFAULT_STAFF_REFUND_LIMIT,
                },
            )
            .await?,
        );
    }
    Ok(out)
}

async fn flag_medical(db: &PgPool, queue: &JobQueue, id: uuid::Uuid) -> anyhow::Result<Business> {
    let mut tx = db.begin().await?;
    let patch = businesses::BusinessPatch {
        is_medical: Some(true),
        ..Default::default()
    };
    let business = businesses::update(&mut *tx, id, &patch)
        .await?
        .context("the seeded partner disappeared")?;
    let purge = jobs::handlers::retention::business_became_medical(&mut tx, id).await?;
    tx.commit().await?;
    jobs::outbox::relay(db, queue, &[purge]).await?;
    Ok(business)
}

/// The cross-promo chains the coalition starts with (created once).
pub async fn promo_chains(
    db: &PgPool,
    partners: &[Business],
) -> anyhow::Result<Vec<storage::coupons::PromoChain>> {
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM promo_chains")
        .fetch_one(db)
        .await?;
    if existing > 0 {
        return Ok(Vec::new());
    }
    let id = |name: &str| {
        partners
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.id)
            .expect("seeded partner")
    };
    let chains = [
        // After the salon, 15 % at the gastromarket for a week.
        (
            Some(id("Миндаль")),
            None,
            dec!(3000),
            id("Лисичкино"),
            DiscountType::Percent,
            dec!(15),
            7,
        ),
        // Any gastronomy purchase of 2 000 ₽: 300 bonuses at the wellness centre.
        (
            None,
            Some(Category::Gastronomy),
            dec!(2000),
            id("Стим Центр"),
            DiscountType::Bonus,
            dec!(300),
            14,
        ),
        // After the cosmetology clinic, 1 000 ₽ off at the salon. (Never after the wellness
        // centre or the medical centre: a medical visit triggers no cross-promo.)
        (
            Some(id("Skinerica")),
            None,
            dec!(5000),
            id("Миндаль"),
            DiscountType::Fixed,
            dec!(1000),
            30,
        ),
    ];
    let mut out = Vec::new();
    for (
        trigger_business_id,
        trigger_category,
        min_amount,
        target_business_id,
        discount_type,
        discount_value,
        valid_days,
    ) in chains
    {
        out.push(
            storage::coupons::create_chain(
                db,
                &storage::coupons::NewChain {
                    trigger_business_id,
                    trigger_category,
                    trigger_churn_risk: None,
                    min_amount,
                    target_business_id,
                    discount_type,
                    discount_value,
                    valid_days,
                    cooldown_days: 0,
                },
            )
            .await?,
        );
    }
    Ok(out)
}
