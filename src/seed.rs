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
