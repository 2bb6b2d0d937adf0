//! The forms that create projects and repositories; the pages render them back with what was typed.

use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct NewProjectForm {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, Default)]
pub struct NewRepositoryForm {
    #[serde(default)]
    pub name: String,
    /// `hosted` (default) or `external`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub branch: String,
}
