//! Money as the API shows it. Amounts travel and are stored in integer minor
//! units (`*_cents`) so sums are exact; only the edges turn them into decimals.
//!
//! Must never: import anything; it is a leaf of the domain.

/// Money in minor units as the decimal number shown by the API.
pub fn money(cents: i64) -> f64 {
    cents as f64 / 100.0
}
