//! Change sets whose values stay encoded: the fast path for replaying large streams (clone, pull),
//! where decoding every value into a [`Value`] tree only to encode it again for storage would double
//! the work. Values are checked to be well-formed MessagePack that decodes as a [`Value`] (string map
//! keys, integers within i64, valid UTF-8, no extension types), so stored bytes are always readable.

use crate::error::{Error, Result};
use crate::types::{ChangeSet, CommitMeta, EntryKey, Kind};
use crate::value::Value;

/// A [`ChangeSet`] whose values are their MessagePack bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RawChangeSet {
    /// The version.
    pub version: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp_micros: u64,
    /// Puts, each value as MessagePack.
    pub puts: Vec<(EntryKey, Vec<u8>)>,
    /// Deletes.
    pub deletes: Vec<EntryKey>,
    /// The commit's kind, message and author, when the stream carries them.
    pub meta: Option<CommitMeta>,
}

impl RawChangeSet {
    /// Puts plus deletes.
    pub fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes the values: the typed form.
    pub fn decode(self) -> Result<ChangeSet> {
        let puts = self
            .puts
            .into_iter()
            .map(|(k, b)| {
                Value::from_msgpack(&b)
                    .map(|v| (k, v))
                    .map_err(|e| Error::Decode(e.to_string()))
            })
            .collect::<Result<_>>()?;
        Ok(ChangeSet {
            version: self.version,
            timestamp_micros: self.timestamp_micros,
            puts,
            deletes: self.deletes,
            meta: self.meta,
        })
    }
}

impl From<&ChangeSet> for RawChangeSet {
    fn from(cs: &ChangeSet) -> RawChangeSet {
        RawChangeSet {
            version: cs.version,
            timestamp_micros: cs.timestamp_micros,
            puts: cs
                .puts
                .iter()
                .map(|(k, v)| (k.clone(), v.to_msgpack()))
                .collect(),
            deletes: cs.deletes.clone(),
            meta: cs.meta.clone(),
        }
    }
}

impl From<ChangeSet> for RawChangeSet {
    fn from(cs: ChangeSet) -> RawChangeSet {
        RawChangeSet::from(&cs)
    }
}

/// Decodes a record payload (a MessagePack `ChangeSet`, see docs/format.md) keeping values encoded.
pub fn decode_payload_raw(payload: &[u8]) -> std::result::Result<RawChangeSet, String> {
    let mut c = Cur { b: payload, p: 0 };
    let fields = c.array_len()?;
    if fields != 4 && fields != 5 {
        return Err("a change set is an array of 4 or 5 fields".into());
    }
    let version = c.uint()?;
    let timestamp_micros = c.uint()?;
    let n = c.array_len()?;
    let mut puts = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        if c.array_len()? != 2 {
            return Err("a put is an array of [key, value]".into());
        }
        let k = c.entry_key()?;
        let start = c.p;
        c.skip_value(0)?;
        puts.push((k, payload[start..c.p].to_vec()));
    }
    let n = c.array_len()?;
    let mut deletes = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        deletes.push(c.entry_key()?);
    }
    let meta = if fields == 5 {
        let mut rest = &payload[c.p..];
        let meta: CommitMeta = rmp_serde::from_read(&mut rest)
            .map_err(|e| format!("unreadable commit metadata: {e}"))?;
        c.p = payload.len() - rest.len();
        Some(meta)
    } else {
        None
    };
    if c.p != payload.len() {
        return Err(format!(
            "{} unexpected bytes after the change set",
            payload.len() - c.p
        ));
    }
    Ok(RawChangeSet {
        version,
        timestamp_micros,
        puts,
        deletes,
        meta,
    })
}

/// The decoded value, needed only for events (their type tag and id are indexed).
pub(crate) fn decode_event_value(bytes: &[u8]) -> Result<Value> {
    Value::from_msgpack(bytes).map_err(|e| Error::Decode(e.to_string()))
}

const MAX_DEPTH: usize = 128;

struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

type R<T> = std::result::Result<T, String>;

impl<'a> Cur<'a> {
    fn byte(&mut self) -> R<u8> {
        let v = *self.b.get(self.p).ok_or("truncated MessagePack")?;
        self.p += 1;
        Ok(v)
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .p
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or("truncated MessagePack")?;
        let s = &self.b[self.p..end];
        self.p = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> R<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |a, b| (a << 8) | *b as u64))
    }

    fn uint(&mut self) -> R<u64> {
        match self.byte()? {
            m @ 0x00..=0x7f => Ok(m as u64),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            m => Err(format!(
                "expected an unsigned integer, found marker {m:#04x}"
            )),
        }
    }

    fn array_len(&mut self) -> R<usize> {
        match self.byte()? {
            m @ 0x90..=0x9f => Ok((m & 0x0f) as usize),
            0xdc => Ok(self.be(2)? as usize),
            0xdd => Ok(self.be(4)? as usize),
            m => Err(format!("expected an array, found marker {m:#04x}")),
        }
    }

    fn str_len(&mut self, m: u8) -> R<Option<usize>> {
        Ok(match m {
            0xa0..=0xbf => Some((m & 0x1f) as usize),
            0xd9 => Some(self.be(1)? as usize),
            0xda => Some(self.be(2)? as usize),
            0xdb => Some(self.be(4)? as usize),
            _ => None,
        })
    }

    fn string(&mut self) -> R<String> {
        let m = self.byte()?;
        let n = self
            .str_len(m)?
            .ok_or_else(|| format!("expected a string, found marker {m:#04x}"))?;
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| "a string is not valid UTF-8")?;
        Ok(s.to_string())
    }

    fn entry_key(&mut self) -> R<EntryKey> {
        if self.array_len()? != 3 {
            return Err("an entry key is an array of [space, kind, key]".into());
        }
        let space = self.string()?;
        let code = self.uint()?;
        let kind = u8::try_from(code)
            .ok()
            .and_then(|c| Kind::from_code(c).ok())
            .ok_or(format!("unknown primitive code {code}"))?;
        let key = self.string()?;
        Ok(EntryKey { space, kind, key })
    }

    /// Skips one value, checking it is one the engine's `Value` decoder accepts.
    fn skip_value(&mut self, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return Err("value nested too deeply".into());
        }
        let m = self.byte()?;
        if let Some(n) = self.str_len(m)? {
            std::str::from_utf8(self.take(n)?).map_err(|_| "a string is not valid UTF-8")?;
            return Ok(());
        }
        match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Ok(()),
            0x80..=0x8f => self.skip_map((m & 0x0f) as usize, depth),
            0x90..=0x9f => self.skip_array((m & 0x0f) as usize, depth),
            0xcc | 0xd0 => self.take(1).map(drop),
            0xcd | 0xd1 => self.take(2).map(drop),
            0xce | 0xd2 | 0xca => self.take(4).map(drop),
            0xd3 | 0xcb => self.take(8).map(drop),
            0xcf => {
                if self.be(8)? > i64::MAX as u64 {
                    return Err("an integer does not fit in a signed 64-bit int".into());
                }
                Ok(())
            }
            0xc4 => {
                let n = self.be(1)? as usize;
                self.take(n).map(drop)
            }
            0xc5 => {
                let n = self.be(2)? as usize;
                self.take(n).map(drop)
            }
            0xc6 => {
                let n = self.be(4)? as usize;
                self.take(n).map(drop)
            }
            0xdc => {
                let n = self.be(2)? as usize;
                self.skip_array(n, depth)
            }
            0xdd => {
                let n = self.be(4)? as usize;
                self.skip_array(n, depth)
            }
            0xde => {
                let n = self.be(2)? as usize;
                self.skip_map(n, depth)
            }
            0xdf => {
                let n = self.be(4)? as usize;
                self.skip_map(n, depth)
            }
            m => Err(format!(
                "unsupported MessagePack marker {m:#04x} in a value"
            )),
        }
    }

    fn skip_array(&mut self, n: usize, depth: usize) -> R<()> {
        for _ in 0..n {
            self.skip_value(depth + 1)?;
        }
        Ok(())
    }

    fn skip_map(&mut self, n: usize, depth: usize) -> R<()> {
        for _ in 0..n {
            let m = self.byte()?;
            let len = self.str_len(m)?.ok_or("an object key is not a string")?;
            std::str::from_utf8(self.take(len)?).map_err(|_| "an object key is not valid UTF-8")?;
            self.skip_value(depth + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN != NaN", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".{0,40}".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,10}", inner, 0..8).prop_map(Value::Object),
            ]
        })
    }

    proptest! {
        /// The raw decoder agrees with the typed one on every change set the encoder writes.
        #[test]
        fn raw_decoding_matches_typed(vals in proptest::collection::vec(value(), 0..20), dels in 0..5usize, version in any::<u64>()) {
            let cs = ChangeSet {
                version,
                timestamp_micros: version / 3,
                puts: vals.iter().enumerate().map(|(i, v)| (EntryKey::new("sp", Kind::Json, format!("k{i}")), v.clone())).collect(),
                deletes: (0..dels).map(|i| EntryKey::new("Ü", Kind::State, format!("d{i}"))).collect(),
                meta: None,
            };
            let bytes = crate::codec::encode_payload(&cs).unwrap();
            let raw = decode_payload_raw(&bytes).unwrap();
            prop_assert_eq!(&raw, &RawChangeSet::from(&cs));
            for ((_, b), (_, v)) in raw.puts.iter().zip(&cs.puts) {
                prop_assert_eq!(&Value::from_msgpack(b).unwrap(), v);
            }
            // Any truncation is refused, never mis-decoded.
            for cut in 0..bytes.len() {
                prop_assert!(decode_payload_raw(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn values_the_typed_decoder_refuses_are_refused() {
        let base = crate::codec::encode_payload(&ChangeSet {
            version: 1,
            timestamp_micros: 0,
            puts: vec![(EntryKey::new("s", Kind::Kv, "k"), Value::Null)],
            deletes: vec![],
            meta: None,
        })
        .unwrap();
        let nil_at = base.iter().rposition(|b| *b == 0xc0).unwrap();
        for bad in [
            vec![0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0], // u64 above i64::MAX
            vec![0xd4, 0x01, 0x00],                // fixext 1
            vec![0x81, 0x01, 0xc0],                // map with an integer key
        ] {
            let mut b = base.clone();
            b.splice(nil_at..nil_at + 1, bad.clone());
            assert!(decode_payload_raw(&b).is_err(), "{bad:x?}");
            assert!(
                crate::codec::decode_payload(&b).is_err(),
                "typed decoder should refuse {bad:x?} too"
            );
        }
        // A string that is not UTF-8 (our encoder never writes one) is refused rather than stored;
        // the typed decoder would read it as bytes.
        let mut b = base.clone();
        b.splice(nil_at..nil_at + 1, [0xa2, 0xff, 0xfe]);
        assert!(decode_payload_raw(&b).is_err());
    }
}
