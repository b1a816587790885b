//! Who may do what: platform roles (`user_roles.role`) and roles at a business
//! (`business_staff.role`), by the names the database, tokens and the API give them.

/// A role over the whole platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlatformRole {
    /// May do everything.
    Superadmin,
    /// Reads everything, retries and discards jobs, approves events and blocks members, and
    /// nothing else (DESIGN.md).
    Moderator,
}

impl PlatformRole {
    pub const ALL: [PlatformRole; 2] = [Self::Superadmin, Self::Moderator];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Superadmin => "superadmin",
            Self::Moderator => "moderator",
        }
    }
}

/// A role at one business (DESIGN.md): an owner does everything, staff issue QR codes and
/// give refunds up to the business's `staff_refund_limit`, a viewer reads the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaffRole {
    Owner,
    Staff,
    Viewer,
}

impl StaffRole {
    /// Owners first: the order staff lists are shown in.
    pub const ALL: [StaffRole; 3] = [Self::Owner, Self::Staff, Self::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Staff => "staff",
            Self::Viewer => "viewer",
        }
    }

    /// Whether the role carries `right`.
    pub fn allows(self, right: Right) -> bool {
        match self {
            Self::Owner => true,
            Self::Staff => matches!(right, Right::IssueQr | Right::Refund),
            Self::Viewer => right == Right::Dashboard,
        }
    }
}

/// What a person on a business's staff may do there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Issue QR codes for checks.
    IssueQr,
    /// Refund purchases (staff up to the business's limit).
    Refund,
    /// Read the dashboard.
    Dashboard,
    /// Manage the staff and read settlement statements.
    Manage,
}

crate::parse_by_name!(PlatformRole, StaffRole);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_parses_back_from_its_name_and_nothing_else_does() {
        for role in PlatformRole::ALL {
            assert_eq!(role.as_str().parse::<PlatformRole>(), Ok(role));
        }
        for role in StaffRole::ALL {
            assert_eq!(role.as_str().parse::<StaffRole>(), Ok(role));
        }
        for name in ["admin", "Owner", "cashier", ""] {
            assert!(name.parse::<PlatformRole>().is_err(), "`{name}` parsed");
            assert!(name.parse::<StaffRole>().is_err(), "`{name}` parsed");
        }
    }

    #[test]
    fn owners_may_do_everything_staff_sell_and_refund_viewers_only_read() {
        use Right::*;
        let cases = [
            (
                StaffRole::Owner,
                [IssueQr, Refund, Dashboard, Manage],
                [true; 4],
            ),
            (
                StaffRole::Staff,
                [IssueQr, Refund, Dashboard, Manage],
                [true, true, false, false],
            ),
            (
                StaffRole::Viewer,
                [IssueQr, Refund, Dashboard, Manage],
                [false, false, true, false],
            ),
        ];
        for (role, rights, expected) in cases {
            for (right, allowed) in rights.into_iter().zip(expected) {
                assert_eq!(role.allows(right), allowed, "{role:?} {right:?}");
            }
        }
    }
}
