//! QR codes as SVG, drawn in Rust, so the enrollment page needs no JavaScript library.

use qrcode::QrCode;
use qrcode::render::svg;

/// `data` (an `otpauth://` URI) as a standalone SVG image; None if it is too long for a QR code.
pub(crate) fn svg(data: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(220, 220)
            .quiet_zone(true)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_an_otpauth_uri() {
        let s = super::svg("otpauth://totp/apiary:n1?secret=JBSWY3DPEHPK3PXP&issuer=apiary")
            .unwrap_or_default();
        assert!(s.starts_with("<?xml") && s.contains("<svg") && s.contains("<path"), "{s}");
    }
}
