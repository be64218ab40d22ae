//! PLACEHOLDER until the staff-core branch merges (replaced by its version).
use super::{Store, StoreError};
use crate::clock::UnixTime;

pub const STAFF_CONTRACT: &str = ":staff";
pub fn staff_login(name: &str) -> String {
    format!("staff:{name}")
}
pub fn staff_name(login: &str) -> Option<&str> {
    login.strip_prefix("staff:")
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Operator,
    Supervisor,
    Auditor,
}
impl StaffRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Supervisor => "supervisor",
            Self::Auditor => "auditor",
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaffMember {
    pub name: String,
    pub role: StaffRole,
    pub email: String,
    pub enabled: bool,
    pub created_at: UnixTime,
}
impl Store {
    pub async fn staff_member(&self, _name: &str) -> Result<Option<StaffMember>, StoreError> {
        Ok(None)
    }
}
