//! The generated avatar for users who have not uploaded one: their initials
//! on a color derived from their id.

/// Background colors, all dark enough for white text.
const PALETTE: [&str; 8] = [
    "#2563eb", "#7c3aed", "#db2777", "#dc2626", "#d97706", "#059669", "#0891b2", "#4f46e5",
];

/// Up to two initials from the display name, upper-cased.
pub fn initials(display_name: &str) -> String {
    let mut words = display_name
        .split_whitespace()
        .filter_map(|w| w.chars().next());
    let first = words.next();
    let last = words.next_back();
    first
        .into_iter()
        .chain(last)
        .flat_map(char::to_uppercase)
        .collect()
}

/// An SVG avatar for `user_id` with the initials of `display_name`.
pub fn svg(user_id: i64, display_name: &str) -> String {
    let color = PALETTE[user_id.unsigned_abs() as usize % PALETTE.len()];
    let text = escape(&initials(display_name));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"256\" height=\"256\" viewBox=\"0 0 256 256\">\
         <rect width=\"256\" height=\"256\" fill=\"{color}\"/>\
         <text x=\"50%\" y=\"50%\" dy=\".35em\" text-anchor=\"middle\" fill=\"#fff\" \
         font-family=\"system-ui,-apple-system,Segoe UI,Roboto,sans-serif\" font-size=\"104\" \
         font-weight=\"600\">{text}</text></svg>"
    )
}

/// Escapes the characters that are special in XML text.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_first_and_last_initial() {
        assert_eq!(initials("ada lovelace"), "AL");
        assert_eq!(initials("Grace Brewster Hopper"), "GH");
        assert_eq!(initials("  zed "), "Z");
        assert_eq!(initials(""), "");
    }

    #[test]
    fn escapes_markup() {
        let svg = svg(1, "<script> &x");
        assert!(svg.contains("&lt;&amp;"), "{svg}");
        assert!(!svg.contains("<script>"));
    }
}
