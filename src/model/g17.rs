//! C's `printf("%.17g")` for the float fingerprint encoding ([`crate::model::aggregates`]):
//! 17 significant digits of the float's exact binary value, correctly rounded (ties to even,
//! as glibc), trailing zeros removed, exponent form below 1e-4 or from 1e17; `nan`, `inf`,
//! `-inf`. BigQuery reproduces it with `FORMAT('%.17g', x)`.
//!
//! Floats from 1e-6 to 2^127 (nearly every value a table holds) take an exact integer path:
//! the value is `m × 2^e` (`m` < 2^53), so its 17 digits are `m × 2^e × 10^k` rounded, computed
//! in 128 bits with the remainder deciding the rounding. Other floats go through Rust's exact
//! formatting (`{:.16e}`), five times slower.

use std::io::Write;

/// 10^16: the smallest 17-digit integer.
const SEVENTEEN_DIGITS: u128 = 10_u128.pow(16);

/// [`write_g17`]'s text as a `String`.
pub fn format_g17(v: f64) -> String {
    let mut out = Vec::with_capacity(24);
    write_g17(v, &mut out);
    String::from_utf8(out).expect("g17 text is ASCII")
}

/// Appends `v` formatted as C's `%.17g` to `out`.
pub fn write_g17(v: f64, out: &mut Vec<u8>) {
    if v.is_nan() || v.is_infinite() {
        out.extend_from_slice(if v.is_nan() {
            b"nan"
        } else if v > 0.0 {
            b"inf"
        } else {
            b"-inf"
        });
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    let (digits, exponent) = seventeen_digits(v.abs()).unwrap_or_else(|| formatted_digits(v.abs()));
    let mut text = [0u8; 17];
    let mut rest = digits;
    for place in text.iter_mut().rev() {
        *place = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let significant = text.iter().rposition(|&d| d != b'0').map_or(1, |last| last + 1);
    place_point(&text[..significant], exponent, out);
}

/// The 17 significant digits of finite `v` ≥ 0 as an integer in [10^16, 10^17) and the decimal
/// exponent of the first, exactly; `None` outside the range 128-bit arithmetic covers (zero,
/// below 1e-6, from 2^127).
fn seventeen_digits(v: f64) -> Option<(u64, i32)> {
    let bits = v.to_bits();
    let biased = (bits >> 52) as i32;
    if biased == 0 {
        return None; // zero or subnormal
    }
    let mantissa = u128::from((bits & ((1 << 52) - 1)) | (1 << 52));
    let binary_exponent = biased - 1075;
    let mut exponent = v.log10().floor() as i32;
    // log10 may be off by one next to a power of ten: the digit count corrects it.
    for _ in 0..3 {
        let (digits, round_up) = scaled(mantissa, binary_exponent, 16 - exponent)?;
        if digits < SEVENTEEN_DIGITS {
            exponent -= 1;
        } else if digits >= 10 * SEVENTEEN_DIGITS {
            exponent += 1;
        } else {
            let rounded = digits + u128::from(round_up);
            return Some(if rounded == 10 * SEVENTEEN_DIGITS {
                (SEVENTEEN_DIGITS as u64, exponent + 1)
            } else {
                (rounded as u64, exponent)
            });
        }
    }
    None
}

/// `mantissa × 2^binary_exponent × 10^k`: its integer part and whether rounding to nearest
/// (ties to even) goes up; `None` when it leaves 128 bits.
fn scaled(mantissa: u128, binary_exponent: i32, k: i32) -> Option<(u128, bool)> {
    let power = |n: i32| 10_u128.checked_pow(n as u32);
    let round_up = |quotient: u128, twice_rest: u128, divisor: u128| twice_rest > divisor || (twice_rest == divisor && quotient % 2 == 1);
    if k >= 0 {
        let scaled = mantissa.checked_mul(power(k)?)?;
        if binary_exponent >= 0 {
            let shifted = scaled.checked_shl(binary_exponent as u32)?;
            return (shifted >> binary_exponent == scaled).then_some((shifted, false));
        }
        let shift = (-binary_exponent) as u32;
        if shift >= 127 {
            return None;
        }
        let quotient = scaled >> shift;
        let rest = scaled & ((1 << shift) - 1);
        Some((quotient, round_up(quotient, rest << 1, 1 << shift)))
    } else {
        if !(0..=74).contains(&binary_exponent) {
            return None;
        }
        let value = mantissa << binary_exponent;
        let divisor = power(-k)?;
        let quotient = value / divisor;
        Some((quotient, round_up(quotient, (value % divisor) << 1, divisor)))
    }
}

/// The digits and exponent from Rust's exact formatting, correctly rounded like C's.
fn formatted_digits(v: f64) -> (u64, i32) {
    // At most "d.dddddddddddddddde-308": 23 bytes.
    let mut buffer = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "{v:.16e}").expect("{:.16e} fits in 32 bytes");
    let written = cursor.position() as usize;
    let text = &buffer[..written];
    let e_at = text.iter().position(|&b| b == b'e').expect("{:e} always has an exponent");
    let exponent = std::str::from_utf8(&text[e_at + 1..]).ok().and_then(|e| e.parse().ok()).expect("{:e} exponent is an integer");
    let digits = text[..e_at].iter().filter(|d| d.is_ascii_digit()).fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    (digits, exponent)
}

/// Writes significant `digits` (d.ddd × 10^exponent) the way `%g` does.
fn place_point(digits: &[u8], exponent: i32, out: &mut Vec<u8>) {
    match exponent {
        0..17 => {
            let integer = exponent as usize + 1;
            if digits.len() <= integer {
                out.extend_from_slice(digits);
                out.resize(out.len() + integer - digits.len(), b'0');
            } else {
                out.extend_from_slice(&digits[..integer]);
                out.push(b'.');
                out.extend_from_slice(&digits[integer..]);
            }
        }
        -4..0 => {
            out.extend_from_slice(b"0.");
            out.resize(out.len() + (-exponent - 1) as usize, b'0');
            out.extend_from_slice(digits);
        }
        _ => {
            out.push(digits[0]);
            if digits.len() > 1 {
                out.push(b'.');
                out.extend_from_slice(&digits[1..]);
            }
            let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The formatting `write_g17` replaced (two exact formattings), kept as its oracle.
    fn g17_by_formatting_twice(v: f64) -> String {
        use crate::model::decimal::trim_fraction;
        if v.is_nan() {
            return "nan".into();
        }
        if v.is_infinite() {
            return if v > 0.0 { "inf".into() } else { "-inf".into() };
        }
        let scientific = format!("{v:.16e}");
        let (mantissa, exponent) = scientific.split_once('e').unwrap();
        let exponent: i32 = exponent.parse().unwrap();
        let trim = |s: &str| trim_fraction(s).to_string();
        if (-4..17).contains(&exponent) {
            let decimals = (16 - exponent).max(0) as usize;
            trim(&format!("{v:.decimals$}"))
        } else {
            let sign = if exponent < 0 { '-' } else { '+' };
            format!("{}e{sign}{:02}", trim(mantissa), exponent.abs())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn g17_places_the_point_as_formatting_twice_did(
            bits in any::<u64>(),
            decimal in -1_000_000_000i64..1_000_000_000,
            scale in 0i32..25,
        ) {
            for v in [f64::from_bits(bits), decimal as f64 / 10f64.powi(scale), decimal as f64 * 10f64.powi(scale)] {
                prop_assert_eq!(format_g17(v), g17_by_formatting_twice(v), "{:e}", v);
            }
        }

        /// The integer path against Rust's exact formatting over its whole range, both sides
        /// of every power of ten included.
        #[test]
        fn the_integer_path_gives_the_exactly_formatted_digits(
            power in -7i32..40,
            fraction in 0.0f64..1.0,
            steps in -3i64..4,
        ) {
            let base = 10f64.powi(power) * (1.0 + 9.0 * fraction);
            prop_assert!(!(-6..=37).contains(&power) || seventeen_digits(base).is_some(), "{:e} took the slow path", base);
            for v in [base, f64::from_bits((10f64.powi(power).to_bits() as i64 + steps) as u64)] {
                if let Some(fast) = seventeen_digits(v) {
                    prop_assert_eq!(fast, formatted_digits(v), "{:e}", v);
                }
            }
        }
    }

    #[test]
    fn g17_matches_c_printf() {
        let cases = [
            (0.1, "0.10000000000000001"),
            (1.0, "1"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1e17, "1e+17"),
            (123456789.0, "123456789"),
            (1e-5, "1.0000000000000001e-05"),
            (0.0001, "0.0001"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "4.9406564584124654e-324"),
            (1.0 / 3.0, "0.33333333333333331"),
            (-2.5e-7, "-2.4999999999999999e-07"),
            (1e23, "9.9999999999999992e+22"),
            (72057594037927952.0, "72057594037927952"),
            (144115188075855904.0, "1.441151880758559e+17"),
            (144115188075855936.0, "1.4411518807585594e+17"),
            (1e22 + 2097152.0, "1.0000000000000002e+22"),
        ];
        for (v, expected) in cases {
            assert_eq!(format_g17(v), expected, "{v:e}");
        }
    }

    /// 1 + n/2^17 has 18 significant digits, the last a 5: a tie, rounded to the even digit.
    #[test]
    fn ties_round_to_even_on_the_integer_path() {
        let cases = [
            (1.0 + 1.0 / 131072.0, "1.0000076293945312"),
            (1.0 + 3.0 / 131072.0, "1.0000228881835938"),
            (3.0 + 5.0 / 131072.0, "3.0000381469726562"),
        ];
        for (v, expected) in cases {
            assert!(seventeen_digits(v).is_some(), "{v:e}");
            assert_eq!(format_g17(v), expected, "{v:e}");
        }
    }
}
