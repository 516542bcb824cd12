//! Consistency tokens: positions in the primary database's write-ahead log that a caller
//! carries from a write to its later reads, so that a read served by a standby is never
//! older than the caller's own writes.

use std::fmt;
use std::str::FromStr;

/// The gRPC metadata key (and HTTP header) carrying a consistency token.
pub const TOKEN_METADATA: &str = "ticketd-consistency-token";

/// A position in PostgreSQL's write-ahead log, written as PostgreSQL writes it
/// (`16/B374D848`: the high and low 32 bits in hexadecimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{s:?} is not a consistency token (such as 16/B374D848)");
        let (high, low) = s.split_once('/').ok_or_else(invalid)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            u64::from_str_radix(p, 16).map_err(|_| invalid())
        };
        Ok(Lsn(part(high)? << 32 | part(low)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_read_and_write_as_postgresql_writes_positions() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn, Lsn(0x16_B374_D848));
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert_eq!("FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
        for bad in [
            "",
            "16",
            "/1",
            "1/",
            "16/B374D848/1",
            "g/1",
            "123456789/0",
            "-1/0",
            " 1/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} was accepted");
        }
    }
}
