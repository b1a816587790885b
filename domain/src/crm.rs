//! The CRMs partners run, by the name `integrations.crm_type` and the API give each.

use std::fmt;

/// A CRM we have a client for (DESIGN.md's `crm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrmType {
    Yclients,
    Iiko,
    /// 1C:Enterprise (Розница, УТ, УНФ).
    OneC,
    AmoCrm,
    Renovatio,
}

impl CrmType {
    pub const ALL: [CrmType; 5] = [
        Self::Yclients,
        Self::Iiko,
        Self::OneC,
        Self::AmoCrm,
        Self::Renovatio,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yclients => "yclients",
            Self::Iiko => "iiko",
            Self::OneC => "1c",
            Self::AmoCrm => "amo_crm",
            Self::Renovatio => "renovatio",
        }
    }
}

impl fmt::Display for CrmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

crate::parse_by_name!(CrmType);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crm_type_parses_back_from_its_name_and_nothing_else_does() {
        for crm in CrmType::ALL {
            assert_eq!(crm.as_str().parse::<CrmType>(), Ok(crm));
        }
        for name in ["1C", "amo", "bitrix24", ""] {
            assert!(name.parse::<CrmType>().is_err(), "`{name}` parsed");
        }
    }
}
