//! "Did you mean": the known name closest to a mistyped one, the way cargo and rustc suggest. Pure string
//! work; which names are known at a given place is the caller's business.

/// The candidate `typed` most likely stands for, if one is close enough: the same but for case or `-`/`_`,
/// else the nearest by Damerau-Levenshtein distance within a third of the typed length (at least one edit, as
/// rustc's `find_best_match_for_name` allows). Ties go to the earlier candidate; an exact match is no suggestion.
pub(super) fn did_you_mean<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let normal = |s: &str| s.to_lowercase().replace('-', "_");
    let typed_normal = normal(typed);
    let max = typed.chars().count().max(3) / 3;
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        if candidate == typed {
            continue;
        }
        let candidate_normal = normal(candidate);
        let distance = if candidate_normal == typed_normal {
            0
        } else {
            strsim::damerau_levenshtein(&typed_normal, &candidate_normal)
        };
        if distance <= max && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}
