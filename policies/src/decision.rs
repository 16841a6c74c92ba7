//! From class and autonomy tier to allow / ask / deny.

use serde::{Deserialize, Serialize};

use crate::class::{Class, Verdict};

/// A tenant's autonomy tier (from the policy bundle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Tier 1: ask for yellow and above.
    Supervised,
    /// Tier 2: allow yellow (audited); ask for yellow_external and red.
    Balanced,
    /// Tier 3: allow yellow and red (audited); ask for yellow_external.
    Autonomous,
}

impl Tier {
    /// Tier from its number (1, 2 or 3).
    pub fn from_number(n: u8) -> Option<Tier> {
        match n {
            1 => Some(Tier::Supervised),
            2 => Some(Tier::Balanced),
            3 => Some(Tier::Autonomous),
            _ => None,
        }
    }
}

/// What the hook does with the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Run it.
    Allow,
    /// Ask the owner; run only after approval.
    Ask,
    /// Block; no approval can grant it.
    Deny,
}

/// The decision for one call, with the rule and reason that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allow, ask or deny.
    pub decision: Action,
    /// The call's class.
    #[serde(rename = "class")]
    pub class: Class,
    /// The deciding rule id.
    pub rule: String,
    /// The deciding reason, for the model.
    pub reason: String,
}

/// Maps a class to an action for a tier.
///
/// `critical` is denied at every tier, and `yellow_external` always asks: the
/// external-communications gate is never skipped.
pub fn action_for(class: Class, tier: Tier) -> Action {
    match (class, tier) {
        (Class::Critical, _) => Action::Deny,
        (Class::Green, _) => Action::Allow,
        (Class::YellowExternal, _) => Action::Ask,
        (Class::Yellow, Tier::Supervised) => Action::Ask,
        (Class::Yellow, _) => Action::Allow,
        (Class::Red, Tier::Autonomous) => Action::Allow,
        (Class::Red, _) => Action::Ask,
    }
}

/// Builds the decision for a verdict at a tier.
///
/// The external-communications gate is never skipped: a call that sends anything off the box
/// (any `yellow_external` finding) is at least asked, even when a stricter class that the tier
/// allows (red at tier 3) decided the verdict.
pub fn decide(verdict: &Verdict, tier: Tier) -> Decision {
    let mut decision = action_for(verdict.class, tier);
    let external = verdict
        .findings
        .iter()
        .any(|f| f.class == Class::YellowExternal);
    if external && decision == Action::Allow {
        decision = Action::Ask;
    }
    Decision {
        decision,
        class: verdict.class,
        rule: verdict.rule().to_owned(),
        reason: verdict.reason().to_owned(),
    }
}

impl Decision {
    /// The text the model reads when the call is blocked or held for approval.
    pub fn block_reason(&self) -> String {
        match self.decision {
            Action::Allow => String::new(),
            Action::Ask => format!(
                "Clawgate: this {} action needs the owner's approval (rule {}): {}",
                self.class, self.rule, self.reason
            ),
            Action::Deny => format!(
                "Clawgate blocked this {} action (rule {}): {}. Do not retry it; choose a safer approach.",
                self.class, self.rule, self.reason
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_table() {
        use Action::*;
        use Class::*;
        let table = [
            (Green, [Allow, Allow, Allow]),
            (Yellow, [Ask, Allow, Allow]),
            (YellowExternal, [Ask, Ask, Ask]),
            (Red, [Ask, Ask, Allow]),
            (Critical, [Deny, Deny, Deny]),
        ];
        for (class, want) in table {
            for (i, tier) in [Tier::Supervised, Tier::Balanced, Tier::Autonomous]
                .into_iter()
                .enumerate()
            {
                assert_eq!(action_for(class, tier), want[i], "{class} at {tier:?}");
            }
        }
        assert_eq!(Tier::from_number(2), Some(Tier::Balanced));
        assert_eq!(Tier::from_number(0), None);
    }

    #[test]
    fn the_external_gate_is_never_skipped_by_a_stricter_class() {
        let finding = |class, rule: &str| crate::class::Finding {
            class,
            rule: rule.into(),
            reason: String::new(),
        };
        let verdict = Verdict::from_findings(vec![
            finding(Class::YellowExternal, "net.fetch"),
            finding(Class::Red, "shell.dynamic_payload"),
        ]);
        assert_eq!(verdict.class, Class::Red);
        // Red alone is allowed at tier 3, but this call also talks to the outside world.
        assert_eq!(decide(&verdict, Tier::Autonomous).decision, Action::Ask);
        let red_only = Verdict::from_findings(vec![finding(Class::Red, "shell.dynamic_payload")]);
        assert_eq!(decide(&red_only, Tier::Autonomous).decision, Action::Allow);
        let with_critical = Verdict::from_findings(vec![
            finding(Class::YellowExternal, "x"),
            finding(Class::Critical, "y"),
        ]);
        assert_eq!(
            decide(&with_critical, Tier::Autonomous).decision,
            Action::Deny
        );
    }
}
