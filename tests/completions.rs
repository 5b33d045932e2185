//! `completions SHELL` of every binary: a script for each shell clap_complete knows, and the
//! bash one, sourced in a real bash, completes the binary's subcommands and flags.

use std::process::Command;
use wgan_gp::binary;

/// What bash completes for the words `line` of `name` (its script sourced first).
fn bash_completes(bin: &str, name: &str, line: &[&str]) -> Vec<String> {
    let script = format!(
        r#"source <("$BIN" completions bash) || exit 3
func=$(complete -p {name} | sed -E 's/.*-F ([^ ]+) .*/\1/')
COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
"$func" {name} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = line.join(" "),
        cword = line.len() - 1,
    );
    let o = Command::new("bash")
        .args(["-c", &script])
        .env("BIN", binary(bin))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{bin}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_binary_prints_completions_that_bash_uses() {
    for (bin, sub, flag_of_sub) in [
        ("trainer", "resume", "--allow-data-change"),
        ("runtime", "gen", "--interpolate"),
        ("export", "triton", "--repo"),
        ("wgan-export", "onnx", "--opset"),
    ] {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let o = Command::new(binary(bin))
                .args(["completions", shell])
                .output()
                .unwrap();
            assert!(o.status.success(), "{bin} completions {shell}");
            let text = String::from_utf8(o.stdout).unwrap();
            let long = flag_of_sub.trim_start_matches('-');
            assert!(
                text.contains(sub) && text.contains(long),
                "{bin} {shell}:\n{text}"
            );
        }
        let prefix = &sub[..2];
        assert!(
            bash_completes(bin, bin, &[bin, prefix]).contains(&sub.to_string()),
            "{bin} {prefix}<TAB>"
        );
        let flag_prefix = &flag_of_sub[..5];
        assert!(
            bash_completes(bin, bin, &[bin, sub, flag_prefix]).contains(&flag_of_sub.to_string()),
            "{bin} {sub} {flag_prefix}<TAB>"
        );
        let o = Command::new(binary(bin))
            .args(["completions", "tcsh"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("possible values: bash"));
    }
}
