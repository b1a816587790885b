//! The coalition as it starts: the five partner businesses of DESIGN.md.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::PgPool;
use storage::{
    businesses::{self, Business, NewBusiness},
    secret::SecretBox,
};

/// A partner: name, category, cashback %, medical.
pub struct Partner {
    pub name: &'static str,
    pub category: &'static str,
    pub cashback_percent: Decimal,
    pub is_medical: bool,
}

pub const PARTNERS: [Partner; 5] = [
    Partner {
        name: "Миндаль",
        category: "beauty",
        cashback_percent: dec!(5),
        is_medical: false,
    },
    Partner {
        name: "Лисичкино",
        category: "gastronomy",
        cashback_percent: dec!(3),
        is_medical: false,
    },
    Partner {
        name: "Skinerica",
        category: "beauty",
        cashback_percent: dec!(7),
        is_medical: false,
    },
    Partner {
        name: "Стим Центр",
        category: "wellness",
        cashback_percent: dec!(5),
        is_medical: false,
    },
    Partner {
        name: "Миллениум",
        category: "health",
        cashback_percent: dec!(4),
        is_medical: true,
    },
];

/// Creates the partners that do not exist yet (by name) and returns all five.
pub async fn partners(db: &PgPool, secrets: &SecretBox) -> anyhow::Result<Vec<Business>> {
    let existing = businesses::list_active(db).await?;
    let mut out = Vec::new();
    for partner in &PARTNERS {
        if let Some(found) = existing.iter().find(|b| b.name == partner.name) {
            out.push(found.clone());
            continue;
        }
        out.push(
            businesses::create(
                db,
                secrets,
                &NewBusiness {
                    name: partner.name.to_owned(),
                    category: partner.category.to_owned(),
                    cashback_percent: partner.cashback_percent,
                    max_redeem_percent: dec!(30),
                    is_medical: partner.is_medical,
                    crm_type: None,
                    crm_base_url: None,
                    crm_credentials: None,
                },
            )
            .await?,
        );
    }
    Ok(out)
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
            "percent",
            dec!(15),
            7,
        ),
        // Any gastronomy purchase of 2 000 ₽: 300 bonuses at the wellness centre.
        (
            None,
            Some("gastronomy"),
            dec!(2000),
            id("Стим Центр"),
            "bonus",
            dec!(300),
            14,
        ),
        // After the wellness centre, 1 000 ₽ off at the cosmetology clinic.
        (
            Some(id("Стим Центр")),
            None,
            dec!(5000),
            id("Skinerica"),
            "fixed",
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
                    trigger_category: trigger_category.map(str::to_owned),
                    trigger_churn_risk: None,
                    min_amount,
                    target_business_id,
                    discount_type: discount_type.to_owned(),
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
