//! Exact decimal text ⇄ scaled integer, for NUMERIC and BIGNUMERIC.
//!
//! Postgres prints numerics as plain decimal text; we parse that into the 256-bit integer
//! Arrow stores for `Decimal(p, s)`. Nothing is rounded: a value that needs more decimals
//! than `s` or more integer digits than `p - s` is an error.

use arrow::datatypes::i256;

/// Why a decimal text did not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("`{text}` is not a finite decimal number")]
    NotANumber { text: String },
    #[error("`{text}` has more than {scale} decimals")]
    TooManyDecimals { text: String, scale: u8 },
    #[error("`{text}` has more than {digits} integer digits")]
    TooManyIntegerDigits { text: String, digits: u8 },
}

/// Parses `-123.4500` into the integer `-1234500` for scale 4.
///
/// # Errors
/// [`DecimalError`] when the text is not a plain decimal (NaN, Infinity, exponent) or does
/// not fit `DECIMAL(precision, scale)` without rounding.
pub fn parse_decimal(text: &str, precision: u8, scale: u8) -> Result<i256, DecimalError> {
    let not_a_number = || DecimalError::NotANumber { text: text.to_string() };
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if integer.is_empty() && fraction.is_empty() {
        return Err(not_a_number());
    }
    if !integer.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(not_a_number());
    }
    let fraction_kept = fraction.trim_end_matches('0');
    if fraction_kept.len() > scale as usize {
        return Err(DecimalError::TooManyDecimals { text: text.to_string(), scale });
    }
    let integer_kept = integer.trim_start_matches('0');
    let integer_digits = precision - scale;
    if integer_kept.len() > integer_digits as usize {
        return Err(DecimalError::TooManyIntegerDigits { text: text.to_string(), digits: integer_digits });
    }
    let ten = i256::from_i128(10);
    let mut value = i256::ZERO;
    let digits = integer_kept.bytes().chain(fraction_kept.bytes());
    for digit in digits {
        value = value.wrapping_mul(ten).wrapping_add(i256::from_i128((digit - b'0') as i128));
    }
    for _ in fraction_kept.len()..scale as usize {
        value = value.wrapping_mul(ten);
    }
    // At most 76 digits were accumulated, which i256 (about 5.7e76) holds: no wrap happened.
    Ok(if negative { value.wrapping_neg() } else { value })
}

/// Formats a scaled integer as BigQuery's `CAST(numeric AS STRING)` does: no trailing
/// zeros after the point, no point for integers, `0` for zero.
pub fn format_decimal(value: i256, scale: u8) -> String {
    let mut out = Vec::with_capacity(48);
    write_decimal(value, scale, &mut out);
    String::from_utf8(out).expect("decimal text is ASCII")
}

/// Appends [`format_decimal`]'s text to `out`. Values within i128 (every NUMERIC, most
/// BIGNUMERIC) are printed as integers without going through a big integer.
pub fn write_decimal(value: i256, scale: u8, out: &mut Vec<u8>) {
    use std::io::Write;
    if value < i256::ZERO {
        out.push(b'-');
    }
    let start = out.len();
    let _ = match value.to_i128() {
        Some(small) => write!(out, "{}", small.unsigned_abs()),
        None => write!(out, "{}", value.wrapping_abs()),
    };
    // i256::MIN has no absolute value: its wrapped one prints with the sign already written.
    if out[start] == b'-' {
        out.remove(start);
    }
    let scale = scale as usize;
    if scale == 0 {
        return;
    }
    let digits = out.len() - start;
    if digits <= scale {
        out.splice(start..start, std::iter::repeat_n(b'0', scale + 1 - digits));
    }
    out.insert(out.len() - scale, b'.');
    let kept = trim_fraction(std::str::from_utf8(&out[start..]).expect("decimal digits are ASCII")).len();
    out.truncate(start + kept);
}

/// Decimal text in its shortest form: trailing zeros after the point dropped, and the point
/// with them when nothing follows it (`1.50` → `1.5`, `2.0` → `2`, `2.` → `2`). Text without a
/// point is returned as it is (`100` stays `100`).
pub fn trim_fraction(text: &str) -> &str {
    match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.'),
        false => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trimmed_fractions_keep_integer_zeros() {
        let trimmed = ["1.50", "2.0", "2.", "100", "0.000", "-0.10", "1e+20"].map(trim_fraction);
        assert_eq!(trimmed, ["1.5", "2", "2", "100", "0", "-0.1", "1e+20"]);
    }

    #[test]
    fn parses_and_scales() {
        assert_eq!(parse_decimal("-123.4500", 10, 4).unwrap(), i256::from_i128(-1234500));
        assert_eq!(parse_decimal("0.000000001", 38, 9).unwrap(), i256::from_i128(1));
        assert_eq!(parse_decimal("42", 5, 0).unwrap(), i256::from_i128(42));
    }

    #[test]
    fn refuses_to_round() {
        assert!(matches!(parse_decimal("1.23", 10, 1), Err(DecimalError::TooManyDecimals { .. })));
        assert!(matches!(parse_decimal("123", 4, 2), Err(DecimalError::TooManyIntegerDigits { .. })));
        for text in ["NaN", "Infinity", "-Infinity", "1e5", "", "-", "."] {
            assert!(matches!(parse_decimal(text, 76, 38), Err(DecimalError::NotANumber { .. })), "{text}");
        }
    }

    #[test]
    fn seventy_six_digits_fit() {
        let text = format!("-{}.{}", "9".repeat(38), "9".repeat(38));
        let value = parse_decimal(&text, 76, 38).unwrap();
        assert_eq!(format_decimal(value, 38), text);
    }

    #[test]
    fn formats_like_bigquery() {
        assert_eq!(format_decimal(i256::from_i128(-1234500), 4), "-123.45");
        assert_eq!(format_decimal(i256::from_i128(5), 3), "0.005");
        assert_eq!(format_decimal(i256::from_i128(0), 3), "0");
        assert_eq!(format_decimal(i256::from_i128(-5), 3), "-0.005");
        assert_eq!(format_decimal(i256::from_i128(1000), 3), "1");
    }

    #[test]
    fn values_past_i128_and_the_extremes_print_whole() {
        let past = i256::from_i128(i128::MAX).wrapping_add(i256::ONE);
        assert_eq!(format_decimal(past, 0), "170141183460469231731687303715884105728");
        assert_eq!(format_decimal(past.wrapping_neg(), 2), "-1701411834604692317316873037158841057.28");
        assert_eq!(format_decimal(i256::from_i128(i128::MIN), 0), i128::MIN.to_string());
        assert_eq!(format_decimal(i256::MAX, 0), i256::MAX.to_string());
        assert_eq!(format_decimal(i256::MIN, 0), i256::MIN.to_string());
    }

    proptest! {
        #[test]
        fn text_round_trips(negative: bool, integer in "[1-9][0-9]{0,37}|0", fraction in "[0-9]{0,37}[1-9]|") {
            let text = format!("{}{integer}{}{fraction}", if negative { "-" } else { "" }, if fraction.is_empty() { "" } else { "." });
            let value = parse_decimal(&text, 76, 38).unwrap();
            let expected = if text == "-0" { "0".to_string() } else { text.clone() };
            prop_assert_eq!(format_decimal(value, 38), expected);
        }
    }
}
