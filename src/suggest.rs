//! "Did you mean …?" for misspelt keys, clouds and targets.

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(distance, c)| *distance <= (c.len().max(3) / 3).max(1) + usize::from(c.len() > 8))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}
