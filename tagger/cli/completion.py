"""``tagger completion bash|zsh|fish``: a completion script made from the parser itself, so it
never lists a command or option that does not exist, and offers the choices where a choice is
expected (``tagger db <Tab>``: upgrade, current; ``--engine <Tab>``: local, ray), file names
only where a path is. (argcomplete would run Python on every Tab press; this prints a static
script once.)"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field


@dataclass
class Command:
    """What completion needs to know of one command ('' is the top level)."""

    help: str = ""
    options: list[str] = field(default_factory=list)  # every option string
    valued: list[str] = field(default_factory=list)  # options that take a value
    option_choices: dict[str, list[str]] = field(default_factory=dict)
    choices: list[str] = field(default_factory=list)  # of its first positional
    choice_name: str = ""  # that positional's name
    paths: bool = False  # a positional without choices: files or folders


def _commands(parser: argparse.ArgumentParser) -> dict[str, Command]:
    """{command: what it takes}; '' is the top level (its options; the commands aside)."""
    out = {"": _command(parser, "")}
    for action in parser._actions:  # argparse has no public walk of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out[name] = _command(sub, helps.get(name, ""))
    return out


def _command(parser: argparse.ArgumentParser, help_text: str) -> Command:
    command = Command(help=help_text)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            command.options += action.option_strings
            if action.nargs != 0:
                command.valued += action.option_strings
                if action.choices:
                    for option in action.option_strings:
                        command.option_choices[option] = [str(c) for c in action.choices]
        elif action.choices and not command.choices:
            command.choices = [str(c) for c in action.choices]
            command.choice_name = action.dest
        elif not action.choices:  # files or folders (a genre too: files do no harm)
            command.paths = True
    command.options.sort()
    return command


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    if shell == "bash":
        return _bash(commands)
    if shell == "zsh":
        return _zsh(commands)
    if shell == "fish":
        return _fish(commands)
    raise ValueError(shell)


def _bash(commands: dict[str, Command]) -> str:
    names = [c for c in commands if c]
    values = "\n".join(
        f'        "{c} {o}") COMPREPLY=($(compgen -W "{" ".join(ch)}" -- "$cur")); return ;;'
        for c, command in commands.items() if c for o, ch in command.option_choices.items())
    valued = sorted({o for command in commands.values() for o in command.valued})
    cases = "\n".join(
        f'        {c}) opts="{" ".join(command.options)}"; words="{" ".join(command.choices)}"; '
        f'files={int(command.paths)} ;;'
        for c, command in commands.items() if c)
    return f'''# bash completion for tagger: eval "$(tagger completion bash)"
_tagger() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" cmd="" opts="" words="" files=0 w i
    (( COMP_CWORD > 0 )) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    for (( i = 1; i < COMP_CWORD; i++ )); do
        w="${{COMP_WORDS[i]}}"
        case "$w" in
            --config) (( i++ )) ;;
            -*) ;;
            *) cmd="$w"; break ;;
        esac
    done
    if [ -z "$cmd" ]; then
        if [ "$prev" = "--config" ]; then
            COMPREPLY=($(compgen -f -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{' '.join(names)} {' '.join(commands[''].options)}" \\
                -- "$cur"))
        fi
        return
    fi
    case "$cmd $prev" in
{values}
    esac
    case "$cmd" in
{cases}
    esac
    case " {' '.join(valued)} " in
        *" $prev "*) words=""; files=1 ;;  # an option's value: a file, or anything
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [ -n "$words" ]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    elif [ "$files" = 1 ]; then
        COMPREPLY=($(compgen -f -- "$cur"))
    else
        COMPREPLY=()
    fi
}}
complete -o filenames -F _tagger tagger
'''


def _zsh_specs(command: Command) -> list[str]:
    specs = []
    for option in command.options:
        if option in command.option_choices:
            specs.append(f"'{option}:{option.lstrip('-')}:"
                         f"({' '.join(command.option_choices[option])})'")
        elif option in command.valued:
            specs.append(f"'{option}:value:_files'")
        else:
            specs.append(f"'{option}'")
    if command.choices:
        specs.append(f"'1:{command.choice_name}:({' '.join(command.choices)})'")
    elif command.paths:
        specs.append("'*:file:_files'")
    return specs


def _zsh(commands: dict[str, Command]) -> str:
    lines = "\n".join(f"        '{c}:{command.help.replace(chr(39), '')}'"
                      for c, command in commands.items() if c)
    cases = "\n".join(f"    {c}) _arguments {' '.join(_zsh_specs(command))} ;;"
                      for c, command in commands.items() if c)
    return f'''#compdef tagger
# zsh completion for tagger: tagger completion zsh > "${{fpath[1]}}/_tagger"
_tagger() {{
    local -a commands
    commands=(
{lines}
    )
    local i=2
    while (( i < CURRENT )) && [[ $words[i] == -* ]]; do
        [[ $words[i] == --config ]] && (( i++ ))
        (( i++ ))
    done
    if (( i >= CURRENT )); then
        _describe 'command' commands
        return
    fi
    local cmd=$words[i]
    (( CURRENT -= i - 1 ))
    shift $(( i - 1 )) words
    case $cmd in
{cases}
    esac
}}
compdef _tagger tagger
'''


def _fish(commands: dict[str, Command]) -> str:
    out = ["# fish completion for tagger: tagger completion fish | source",
           "complete -c tagger -f"]  # no file names unless a command takes paths
    for c, command in commands.items():
        if not c:
            continue
        seen = f"-n '__fish_seen_subcommand_from {c}'"
        out.append(f"complete -c tagger -n '__fish_use_subcommand' -a {c} "
                   f"-d '{command.help.replace(chr(39), '')}'")
        for option in command.options:
            flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
            if option in command.option_choices:
                flag += f" -x -a '{' '.join(command.option_choices[option])}'"
            elif option in command.valued:
                flag += " -r -F"
            out.append(f"complete -c tagger {seen} {flag}")
        if command.choices:
            out.append(f"complete -c tagger {seen} -f -a '{' '.join(command.choices)}'")
        elif command.paths:
            out.append(f"complete -c tagger {seen} -F")
    return "\n".join(out) + "\n"
