"""``tagger completion bash|zsh|fish``: a completion script made from the parser itself, so it
never lists a command or option that does not exist. (argcomplete would run Python on every
Tab press; this prints a static script once.)"""

from __future__ import annotations

import argparse


def _commands(parser: argparse.ArgumentParser) -> dict[str, tuple[list[str], str]]:
    """{command: (its options, its one-line help)}; '' is the top level."""
    out = {"": (_options(parser), "")}
    for action in parser._actions:  # argparse has no public walk of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out[name] = (_options(sub), helps.get(name, ""))
    return out


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({o for a in parser._actions for o in a.option_strings})


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    names = [c for c in commands if c]
    if shell == "bash":
        cases = "\n".join(f'        {c}) opts="{" ".join(o)}" ;;' for c, (o, _) in commands.items()
                          if c)
        return f'''# bash completion for tagger: eval "$(tagger completion bash)"
_tagger() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" opts="" w
    for w in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case "$w" in -*) ;; *) cmd="$w"; break ;; esac
    done
    if [ -z "$cmd" ]; then
        COMPREPLY=($(compgen -W "{' '.join(names)} {' '.join(commands[''][0])}" -- "$cur"))
        return
    fi
    case "$cmd" in
{cases}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _tagger tagger
'''
    if shell == "zsh":
        lines = "\n".join(f"        '{c}:{h.replace(chr(39), '')}'"
                          for c, (_, h) in commands.items() if c)
        cases = "\n".join(
            f"    {c}) _arguments '*:file:_files' {' '.join(repr(o) for o in opts)} ;;"
            for c, (opts, _) in commands.items() if c)
        return f'''#compdef tagger
# zsh completion for tagger: tagger completion zsh > "${{fpath[1]}}/_tagger"
_tagger() {{
    local -a commands
    commands=(
{lines}
    )
    if (( CURRENT == 2 )); then
        _describe 'command' commands
        return
    fi
    case $words[2] in
{cases}
    esac
}}
compdef _tagger tagger
'''
    if shell == "fish":
        out = ["# fish completion for tagger: tagger completion fish | source"]
        out.append("complete -c tagger -f")
        for c, (opts, h) in commands.items():
            if not c:
                continue
            out.append(f"complete -c tagger -n '__fish_use_subcommand' -a {c} "
                       f"-d '{h.replace(chr(39), '')}'")
            for o in opts:
                flag = f"-l {o[2:]}" if o.startswith("--") else f"-s {o[1:]}"
                out.append(f"complete -c tagger -n '__fish_seen_subcommand_from {c}' {flag}")
            out.append(f"complete -c tagger -n '__fish_seen_subcommand_from {c}' -F")
        return "\n".join(out) + "\n"
    raise ValueError(shell)
