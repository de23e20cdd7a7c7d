//! "Did you mean": the known name nearest to one someone typed.

/// The candidate nearest to a name someone typed, if one is near enough to be what they meant
/// (the "did you mean" of every hint that offers one).
pub fn nearest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(typed, c), c))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
