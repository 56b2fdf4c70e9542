//! Incremental transactions in the forms for which nft (1.0.x) fetches the least before it
//! runs them. nft builds a cache from the kernel first, sized by what the commands need:
//! `add rule` looks its chain up and `add element` and every `delete` ask for all chains, so
//! either lists every chain of the namespace (~30 ms at 10 000 chains, more than the change
//! itself); `add chain NAME { rules }`, `add set NAME { declaration; elements = { .. } }`,
//! `add table` and `flush` need at most the tables and the set headers.
//!
//! [`rewrite`] turns the renderer's script into those forms, keeping its order: one chain's
//! `add rule` lines become one chain block; `add element` becomes a set (or map) block carrying
//! the set's declaration; a set losing elements is flushed and refilled with its desired
//! elements (sets up to [`REFILL_LIMIT`]); each set a chain block reads is declared before it
//! (nft must know it, and an identical declaration of an existing set changes nothing in the
//! kernel). A script that lists the chains anyway (it deletes a chain, set, map or counter),
//! shrinks a bigger set, or holds a line this does not know is left as it is (`None`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use starling_policy::program::Family;
use starling_policy::render::names::TABLE;
use starling_policy::render::{Renderer, TableView};

/// Largest set refilled instead of deleting elements (refilling costs its size).
pub const REFILL_LIMIT: usize = 1024;

/// Elements per line, as the renderer writes them.
const CHUNK: usize = 512;

/// One line of the renderer's script: verb, object, family, name, the rest.
struct Line<'a> {
    verb: &'a str,
    object: &'a str,
    family: Family,
    family_text: &'a str,
    name: &'a str,
    rest: &'a str,
}

fn parse(line: &str) -> Option<Line<'_>> {
    let mut parts = line.splitn(6, ' ');
    let verb = parts.next()?;
    let object = parts.next()?;
    let family_text = parts.next()?;
    let family = match family_text {
        "ip" => Family::V4,
        "ip6" => Family::V6,
        _ => return None,
    };
    if parts.next()? != TABLE {
        return None;
    }
    Some(Line {
        verb,
        object,
        family,
        family_text,
        name: parts.next().unwrap_or(""),
        rest: parts.next().unwrap_or(""),
    })
}

/// `type ...; flags ...;` of a desired set and its keyword (`set` or `map`).
fn declaration(table: &TableView, name: &str, family: Family) -> Option<(&'static str, String)> {
    let set = table.sets.get(name)?;
    let (keyword, body) = set.kind.declaration(family);
    let inner = body.trim().strip_prefix('{')?.strip_suffix('}')?.trim();
    Some((keyword, inner.to_string()))
}

/// The sets and maps a rule names (`@name`).
fn references(rule: &str) -> impl Iterator<Item = &str> {
    rule.split('@').skip(1).filter_map(|tail| {
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(tail.len());
        (end > 0).then(|| &tail[..end])
    })
}

struct Writer<'a> {
    renderer: &'a Renderer,
    out: String,
    /// Sets nft will know when it reaches the next line: declared or created above.
    declared: BTreeSet<(Family, String)>,
    /// The chain whose rules are being gathered, and its rules.
    block: Option<(Family, &'a str, &'a str, Vec<&'a str>)>,
}

impl<'a> Writer<'a> {
    fn set_block(
        &mut self,
        family: Family,
        family_text: &str,
        name: &str,
        items: &[String],
    ) -> Option<()> {
        let (keyword, inner) = declaration(self.renderer.table(family), name, family)?;
        if items.is_empty() {
            let _ = writeln!(
                self.out,
                "add {keyword} {family_text} {TABLE} {name} {{ {inner} }}"
            );
        }
        for chunk in items.chunks(CHUNK) {
            let _ = writeln!(
                self.out,
                "add {keyword} {family_text} {TABLE} {name} {{ {inner} elements = {{ {} }} }}",
                chunk.join(", ")
            );
        }
        self.declared.insert((family, name.to_string()));
        Some(())
    }

    fn close_block(&mut self) -> Option<()> {
        let Some((family, family_text, chain, rules)) = self.block.take() else {
            return Some(());
        };
        for rule in &rules {
            for set in references(rule) {
                if !self.declared.contains(&(family, set.to_string())) {
                    self.set_block(family, family_text, set, &[])?;
                }
            }
        }
        let _ = writeln!(self.out, "add chain {family_text} {TABLE} {chain} {{");
        for rule in rules {
            let _ = writeln!(self.out, "{rule}");
        }
        self.out.push_str("}\n");
        Some(())
    }
}

/// The lean form of an incremental transaction `script` rendered by `renderer` (whose tables
/// are already the desired ones), or `None` when it is to run as it is.
pub fn rewrite(script: &str, renderer: &Renderer) -> Option<String> {
    let mut refill: BTreeSet<(Family, &str)> = BTreeSet::new();
    for text in script.lines() {
        let line = parse(text)?;
        match (line.verb, line.object) {
            ("delete", "element") => {
                let size = renderer
                    .table(line.family)
                    .sets
                    .get(line.name)?
                    .elements
                    .len();
                if size > REFILL_LIMIT {
                    return None;
                }
                refill.insert((line.family, line.name));
            }
            ("delete", _) => return None,
            _ => {}
        }
    }
    let mut writer = Writer {
        renderer,
        out: String::with_capacity(script.len()),
        declared: BTreeSet::new(),
        block: None,
    };
    let mut refilled: BTreeSet<(Family, &str)> = BTreeSet::new();
    for text in script.lines() {
        let line = parse(text)?;
        if (line.verb, line.object) == ("add", "rule") {
            let same = writer
                .block
                .as_ref()
                .is_some_and(|(family, _, chain, _)| *family == line.family && *chain == line.name);
            if !same {
                writer.close_block()?;
                writer.block = Some((line.family, line.family_text, line.name, Vec::new()));
            }
            if let Some((_, _, _, rules)) = writer.block.as_mut() {
                rules.push(line.rest);
            }
            continue;
        }
        writer.close_block()?;
        let key = (line.family, line.name);
        match (line.verb, line.object) {
            ("add", "table") | ("add", "counter") | ("add", "chain") | ("flush", "chain") => {
                let _ = writeln!(writer.out, "{text}");
            }
            ("add", "set") | ("add", "map") | ("flush", "set") | ("flush", "map") => {
                let _ = writeln!(writer.out, "{text}");
                writer.declared.insert((line.family, line.name.to_string()));
            }
            ("add", "element") | ("delete", "element") if refill.contains(&key) => {
                if refilled.insert(key) {
                    let (keyword, _) =
                        declaration(renderer.table(line.family), line.name, line.family)?;
                    let _ = writeln!(
                        writer.out,
                        "flush {keyword} {} {TABLE} {}",
                        line.family_text, line.name
                    );
                    let elements: Vec<String> = renderer
                        .table(line.family)
                        .sets
                        .get(line.name)?
                        .elements
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    writer.set_block(line.family, line.family_text, line.name, &elements)?;
                }
            }
            ("add", "element") => {
                let items = line
                    .rest
                    .trim()
                    .strip_prefix('{')?
                    .strip_suffix('}')?
                    .trim();
                writer.set_block(
                    line.family,
                    line.family_text,
                    line.name,
                    &[items.to_string()],
                )?;
            }
            _ => return None,
        }
    }
    writer.close_block()?;
    Some(writer.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_policy::program::{Changes, SetMembers};
    use starling_policy::render::{synthetic, RenderConfig};

    fn rendered(
        endpoints: usize,
        policies: usize,
    ) -> (Renderer, starling_policy::program::Program) {
        let program = synthetic::large_program(endpoints, policies);
        let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
        renderer.rebuild(&program);
        (renderer, program)
    }

    /// Every set a block reads is declared earlier in its family's part; no command that lists
    /// the chains is left.
    fn assert_lean(lean: &str) {
        let mut declared: BTreeSet<(String, String)> = BTreeSet::new();
        let mut family = String::new();
        for line in lean.lines() {
            for forbidden in ["add rule ", "add element ", "delete "] {
                assert!(!line.starts_with(forbidden), "{line}\n{lean}");
            }
            let words: Vec<&str> = line.split(' ').collect();
            if let ["add" | "flush", "set" | "map", fam, _, name, ..] = words.as_slice() {
                declared.insert((fam.to_string(), name.to_string()));
            }
            if let ["add", "chain", fam, ..] = words.as_slice() {
                family = fam.to_string();
            }
            for set in references(line) {
                assert!(
                    declared.contains(&(family.clone(), set.to_string())),
                    "@{set} undeclared\n{lean}"
                );
            }
        }
    }

    #[test]
    fn a_new_endpoint_becomes_chain_and_set_blocks() {
        let (mut renderer, mut program) = rendered(8, 8);
        let changes = synthetic::add_endpoint(&mut program, 8, 8, 8);
        let transaction = renderer.update(&program, &changes);
        assert!(
            transaction.script.contains("add rule "),
            "{}",
            transaction.script
        );
        let lean = rewrite(&transaction.script, &renderer).expect("a lean form");
        assert_lean(&lean);
        assert!(
            lean.contains("add chain ip starling fw-cali00000000008 {\n"),
            "{lean}"
        );
        assert!(
            lean.contains("add map ip starling from-wl { type ifname : verdict; elements = { \"cali00000000008\" : goto fw-cali00000000008 } }"),
            "{lean}"
        );
        // Every rule is still there, once.
        let rules = transaction
            .script
            .lines()
            .filter(|l| l.starts_with("add rule "))
            .count();
        let blocks = lean
            .lines()
            .filter(|l| !l.starts_with("add ") && !l.starts_with("flush ") && *l != "}")
            .count();
        assert_eq!(rules, blocks, "{lean}");
    }

    #[test]
    fn a_policy_rewrite_declares_the_sets_its_rules_read() {
        let (mut renderer, mut program) = rendered(8, 8);
        let id = program.policies.keys().next().unwrap().clone();
        let rules = program.policies.get_mut(&id).unwrap();
        rules.ingress.v4.reverse();
        let changes = Changes {
            policies: [id].into(),
            ..Changes::default()
        };
        let transaction = renderer.update(&program, &changes);
        let lean = rewrite(&transaction.script, &renderer).expect("a lean form");
        assert!(lean.contains("flush chain ip starling pi-"), "{lean}");
        assert!(lean.contains("add set ip starling s-"), "{lean}");
        assert_lean(&lean);
    }

    #[test]
    fn a_set_losing_a_member_is_flushed_and_refilled_with_the_rest() {
        // 120 endpoints: the selector sets the 8 policies read have two or three members.
        let (mut renderer, mut program) = rendered(120, 8);
        let (key, members) = program
            .sets
            .iter_mut()
            .find(|((_, family), members)| {
                *family == Family::V4 && matches!(members, SetMembers::Nets(nets) if nets.len() > 1)
            })
            .unwrap();
        let SetMembers::Nets(nets) = members else {
            unreachable!()
        };
        let gone = *nets.iter().next().unwrap();
        nets.remove(&gone);
        let kept: Vec<String> = nets.iter().map(|net| net.addr().to_string()).collect();
        let changes = Changes {
            sets: [key.clone()].into(),
            ..Changes::default()
        };
        let transaction = renderer.update(&program, &changes);
        assert!(
            transaction.script.contains("delete element ip starling"),
            "{}",
            transaction.script
        );
        let lean = rewrite(&transaction.script, &renderer).expect("a lean form");
        assert_lean(&lean);
        assert!(
            lean.lines()
                .any(|l| l.starts_with("flush set ip starling s-")),
            "{lean}"
        );
        let refill = lean.lines().find(|l| l.contains("elements = {")).unwrap();
        let (_, list) = refill.split_once("elements = { ").unwrap();
        let elements: Vec<&str> = list.trim_end_matches(" } }").split(", ").collect();
        assert_eq!(elements, kept, "{lean}");
        assert!(!elements.contains(&gone.addr().to_string().as_str()));
    }

    #[test]
    fn removals_and_unknown_lines_stay_as_they_are() {
        let (mut renderer, mut program) = rendered(8, 8);
        let key = program.endpoints.keys().next().unwrap().clone();
        program.endpoints.remove(&key);
        let changes = Changes {
            endpoints: [key].into(),
            ..Changes::default()
        };
        let transaction = renderer.update(&program, &changes);
        assert!(
            transaction.script.contains("delete chain"),
            "{}",
            transaction.script
        );
        assert_eq!(rewrite(&transaction.script, &renderer), None);
        assert_eq!(rewrite("add rule inet other c accept\n", &renderer), None);
        assert_eq!(rewrite("list ruleset\n", &renderer), None);
    }
}
