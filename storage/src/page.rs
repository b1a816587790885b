//! Keyset pagination: a cursor is the (created_at, id) of the last row returned, opaque to clients.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use time::OffsetDateTime;
use uuid::Uuid;

/// Where the next page starts: after this row, in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

/// A cursor that was not produced by us.
#[derive(Debug, thiserror::Error)]
#[error("the cursor is not valid; start again without one")]
pub struct BadCursor;

impl Cursor {
    pub fn encode(&self) -> String {
        let nanos = self.created_at.unix_timestamp_nanos();
        URL_SAFE_NO_PAD.encode(format!("{nanos}:{}", self.id))
    }

    pub fn decode(value: &str) -> Result<Self, BadCursor> {
        let raw = URL_SAFE_NO_PAD.decode(value).map_err(|_| BadCursor)?;
        let raw = String::from_utf8(raw).map_err(|_| BadCursor)?;
        let (nanos, id) = raw.split_once(':').ok_or(BadCursor)?;
        let nanos: i128 = nanos.parse().map_err(|_| BadCursor)?;
        Ok(Self {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| BadCursor)?,
            id: id.parse().map_err(|_| BadCursor)?,
        })
    }
}

/// One page of a list and the cursor of the next, if there is more.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> Cursor) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|r| key(r).encode())
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let cursor = Cursor {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_000)
                .unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert!(Cursor::decode("not a cursor").is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("12:not-a-uuid")).is_err());
    }
}
