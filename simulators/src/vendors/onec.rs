//! onec simulator: not implemented yet.

use crate::State;
use poem::Route;
use std::sync::Arc;

pub(crate) fn routes(_state: Arc<State>) -> Route {
    Route::new()
}
