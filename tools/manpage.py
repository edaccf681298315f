#!/usr/bin/env python3
"""Makes meshrun(1) and the bash completion from `meshrun --help` and each command's `--help`,
so that the help text is written once (in tools/meshrun.cpp) and the man page cannot drift from it.

    tools/manpage.py --version 0.1.0 --man OUT.1 --completion dist/meshrun.bash.in OUT.bash -- MESHRUN...

MESHRUN... is the command that runs a meshrun binary: its path, or an emulator and the path
(`qemu-aarch64-static build/tools/meshrun`) for a cross build. The help text is CLI11's: a
description, `Usage:`, sections of entries (`Positionals:`, `Options:`, `Subcommands:`) whose
text starts in column 30, then the footer: prose, `Exit status:`, `Example:` and indented examples.
"""

import argparse
import datetime
import os
import re
import subprocess
import sys
import textwrap

COLUMN = 30  # where CLI11 starts an entry's text
SECTIONS = ("Positionals", "Options", "Subcommands")


def fail(message):
    sys.exit(f"manpage.py: error: {message}")


def help_text(command, args):
    try:
        proc = subprocess.run(command + args + ["--help"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        fail(f"cannot run {' '.join(command)}: {e.strerror}")
    if proc.returncode != 0:
        fail(f"`{' '.join(command + args)} --help` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


class Option:
    """One entry of `Options:` or `Positionals:`: `--format TEXT:{text,json}=text`."""

    def __init__(self, left, text):
        names, _, spec = left.partition(" ")
        self.names = names.split(",")
        self.required = spec.endswith("REQUIRED")
        spec = spec.removesuffix("REQUIRED").strip()
        self.default = None
        m = re.search(r"=(\S+)$", spec)
        if m:
            self.default, spec = m.group(1), spec[: m.start()]
        # TYPE:CHECK, the check being what the option's validator says; a `:` in brackets is the
        # type's own (`[ADDR:]PORT`).
        m = re.match(r"((?:\[[^]]*\]|[^:])*)(?::(.*))?$", spec)
        self.metavar = m.group(1).removesuffix(" ...")  # CLI11 marks a positional that takes many
        check = m.group(2) or ""
        self.choices, self.check = [], ""
        if re.fullmatch(r"\{.*\}", check):  # CLI::IsMember: {text,json}
            self.choices = check[1:-1].split(",")
        elif re.fullmatch(r"[A-Z]+", check):  # a validator's name, `SECONDS`: a better type name
            self.metavar = check
        elif m := re.fullmatch(r"\w+ in \[(.*) - (.*)\]", check):  # CLI::Range
            self.check = f"from {m.group(1)} to {m.group(2)}"
        elif check:
            self.check = check
        self.text = text

    def takes(self):
        """What the option's value is, for the completion: nothing (a flag), `one of A B`, or a kind."""
        if not self.metavar:
            return ""
        if self.choices:
            return "one of " + " ".join(self.choices)
        if self.metavar in ("FILE", "FILE...") or self.metavar.endswith((".xml", ".mesh")):
            return "file"
        return {"DIR": "dir", "NAME": "node"}.get(self.metavar, "value")


class Help:
    """The parsed `--help` of meshrun or of one of its commands."""

    def __init__(self, text):
        lines = text.rstrip("\n").split("\n")
        usage = next((i for i, line in enumerate(lines) if line.startswith("Usage: ")), None)
        if usage is None:
            fail("no `Usage:` line in the help text")
        self.description = "\n".join(lines[:usage]).strip()
        self.sections = {}
        i = usage + 1
        while i < len(lines) and not lines[i]:
            i += 1
        while i < len(lines) and lines[i].rstrip(":") in SECTIONS and lines[i].endswith(":"):
            entries = self.sections.setdefault(lines[i][:-1], [])
            i += 1
            while i < len(lines) and lines[i].strip():
                line = lines[i]
                if line.startswith(" " * COLUMN):  # the text of the entry above, on its own line
                    left, text = entries.pop()
                    entries.append((left, (text + " " + line.strip()).strip()))
                elif len(line) > COLUMN and line[COLUMN - 1] == " " and line[2:COLUMN].rstrip():
                    entries.append((line[:COLUMN].strip(), line[COLUMN:].strip()))
                else:
                    entries.append((line.strip(), ""))
                i += 1
            while i < len(lines) and not lines[i]:
                i += 1
        self.footer = "\n".join(lines[i:]).strip("\n")
        self.options = [Option(left, text) for left, text in self.sections.get("Options", [])]
        self.positionals = [Option(left, text) for left, text in self.sections.get("Positionals", [])]
        self.commands = [(left, text) for left, text in self.sections.get("Subcommands", [])]


# --- roff -------------------------------------------------------------------------------------

def roff_text(text):
    """Help text as roff words: `\\`, `-` and characters outside ASCII escaped, `code` in bold."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    out = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in out)
    parts = out.split("`")
    if len(parts) % 2 == 1:  # paired backquotes: code, in bold
        out = "".join(p if k % 2 == 0 else f"\\fB{p}\\fR" for k, p in enumerate(parts))
    else:
        out = "\\(ga".join(parts)
    return out


def roff_lines(text):
    """Help text as roff lines of at most 80 characters (where words allow), a leading `.` or `'`
    made harmless (it would be a request)."""
    lines = textwrap.wrap(roff_text(text), width=80, break_long_words=False, break_on_hyphens=False)
    return ["\\&" + line if line.startswith((".", "'")) else line for line in lines]


def roff_prose(text):
    """Help prose as roff: lines filled into paragraphs (a `code` span may cross a line),
    `Example:` blocks and indented lines kept as they are."""
    out, verbatim, para = [], False, []

    def flush():
        if para:
            out.extend(roff_lines(" ".join(para)))
            para.clear()

    for line in text.split("\n"):
        indented = line.startswith("  ")
        if not indented and line.strip() and re.match(r"[A-Z][A-Za-z ]*: ", line):  # `Exit status: ...`
            flush()
            if out and out[-1] != ".PP":
                out.append(".PP")
        if indented or not line.strip():
            flush()
        if indented and not verbatim:
            out += [".RS", ".nf"]
        elif not indented and verbatim:
            out += [".fi", ".RE"]
        verbatim = indented
        if not line.strip():
            out.append(".PP")
        elif verbatim:
            out.append(("\\&" if line.strip().startswith((".", "'")) else "") + roff_text(line.strip()))
        else:
            para.append(line)
    flush()
    if verbatim:
        out += [".fi", ".RE"]
    return out


def option_heading(opt):
    names = ", ".join(f"\\fB{roff_text(n)}\\fR" for n in opt.names)
    if opt.choices:
        value = "|".join(f"\\fB{roff_text(c)}\\fR" for c in opt.choices)
    else:
        value = f"\\fI{roff_text(opt.metavar)}\\fR" if opt.metavar else ""
    return f"{names} {value}".rstrip()


def option_text(opt):
    text = opt.text.rstrip()
    if opt.check:
        text += f" ({opt.check})"
    if opt.default is not None:
        text += f" (default: `{opt.default}`)"
    if opt.required and opt.names[0].startswith("-"):
        text += " (required)"
    return roff_lines(text)


def synopsis(name, cmd):
    """meshrun CMD, its required options, [OPTIONS], its positionals."""
    words = [f"\\fBmeshrun {name}\\fR"]
    for opt in cmd.options:
        if opt.required:
            words.append(f"{option_heading(opt)}")
    words.append("[\\fIOPTIONS\\fR]")
    for pos in cmd.positionals:
        metavar = f"\\fI{roff_text(pos.metavar)}\\fR"
        words.append(metavar if pos.required else f"[{metavar}]")
    return " ".join(words)


def split_exit_status(footer):
    """The footer without its `Exit status:` paragraph, and that paragraph."""
    rest, status, inside = [], [], False
    for line in footer.split("\n"):
        if line.startswith("Exit status:"):
            inside = True
            line = line.removeprefix("Exit status:").strip()
        elif inside and (not line.strip() or re.match(r"[A-Z][A-Za-z ]*: ", line)):
            inside = False
        (status if inside else rest).append(line)
    return "\n".join(rest).strip("\n"), " ".join(status)


def man_page(version, top, commands):
    epoch = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds (Debian's) set it
    when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch else datetime.datetime.now()
    date = when.strftime("%Y-%m-%d")
    summary = top.description.split("\n")[0]
    name, _, summary = summary.partition(": ")
    out = [
        f'.TH MESHRUN 1 "{date}" "meshrun {version}" "User Commands"',
        ".nh",  # no hyphenation: option names and paths are copied from the page
        ".SH NAME",
        f"meshrun \\- {roff_text(summary.rstrip('.'))}",
        ".SH SYNOPSIS",
    ]
    for i, (cmd_name, _) in enumerate(top.commands):
        out += [".PP"] if i else []
        out.append(synopsis(cmd_name, commands[cmd_name]))
    out += [".PP", "\\fBmeshrun\\fR \\fB\\-\\-help\\fR | \\fB\\-\\-version\\fR"]
    footer, status = split_exit_status(top.footer)
    rest = top.description.split("\n", 1)[1].strip() if "\n" in top.description else ""
    out += [".SH DESCRIPTION"] + roff_prose(rest) + [".PP"] + roff_prose(footer)
    out += [".SH OPTIONS"]
    for opt in top.options:
        out += [".TP", option_heading(opt)] + option_text(opt)
    out.append(".SH COMMANDS")
    for cmd_name, summary in top.commands:
        cmd = commands[cmd_name]
        out += [f".SS {cmd_name}", synopsis(cmd_name, cmd), ".PP"] + roff_lines(summary.rstrip(".") + ".")
        for pos in cmd.positionals:
            out += [".TP", f"\\fI{roff_text(pos.metavar)}\\fR"] + option_text(pos)
        for opt in cmd.options:
            out += [".TP", option_heading(opt)] + option_text(opt)
        if cmd.footer:
            out += [".PP"] + roff_prose(cmd.footer)
    out += [".SH EXIT STATUS"] + roff_lines(status or "0 on success, 1 on failure, 2 on bad usage.")
    out += [".PP", "Each command's own is under \\fBCOMMANDS\\fR."]
    out += [
        ".SH ENVIRONMENT",
        ".TP", ".B NO_COLOR", "When set, \\fB\\-\\-color auto\\fR does not color.",
        ".TP", ".B NOTIFY_SOCKET",
        "Set by systemd for \\fBType=notify\\fR: \\fBrun\\fR and \\fBup\\fR send",
        "\\fBREADY=1\\fR (with a \\fBSTATUS=\\fR line) once every port listens and every",
        "pin is held, and \\fBSTOPPING=1\\fR as they begin to stop.",
        ".TP", ".B JOURNAL_STREAM",
        "Set by systemd when standard output or error is the journal: then",
        "\\fB\\-\\-color auto\\fR does not color, diagnostics are one line each, and",
        "errors and warnings start with their priority (\\fB<3>\\fR, \\fB<4>\\fR).",
        ".TP", ".B TZ",
        "The time zone of \\fB\\-\\-timestamps\\fR in the text log.",
        ".SH FILES",
        ".TP", ".I /etc/meshrun/fleet.mesh",
        "The fleet file that \\fBmeshrun@.service\\fR runs:",
        "\\fBmeshrun@\\fR\\fINODE\\fR runs its node \\fINODE\\fR",
        "(not installed by meshrun: the fleet's own file goes there).",
        ".TP", ".I /etc/default/meshrun",
        "Optional; \\fBMESHRUN_ARGS=\\fR\\fIOPTIONS\\fR there are added to",
        "every node's \\fBmeshrun run\\fR.",
        ".TP", ".I /lib/systemd/system/meshrun@.service",
        "The systemd template unit: \\fBsystemctl enable \\-\\-now meshrun@\\fR\\fINODE\\fR.",
        ".TP", ".I /var/lib/meshrun/",
        "The service's \\fB\\-\\-state\\fR directory: \\fINODE\\fR.state for each node.",
        ".TP", ".I /usr/share/meshrun/topologies/",
        "Example .mesh files.",
        ".TP", ".I /usr/share/doc/meshrun/",
        "README.md and the documentation (docs/): the language, delivery, discovery,",
        "GPIO, install.",
        ".SH SEE ALSO",
        ".BR systemctl (1),",
        ".BR journalctl (1),",
        ".BR systemd.exec (5),",
        ".BR sysusers.d (5),",
        ".BR gpioinfo (1)",
    ]
    return "\n".join(out) + "\n"


# --- bash completion ----------------------------------------------------------------------------

def completion(template, top, commands):
    """The template with @COMMANDS@, @OPTIONS@ and @TAKES@ filled in from the help text."""
    def quoted(words):
        return "'" + " ".join(words) + "'"

    options, takes = [], []
    for name, cmd in [("", top)] + list(commands.items()):
        names = [n for opt in cmd.options for n in opt.names]
        options.append(f"        {quoted([name]) if name else quoted([])}) echo {quoted(names)} ;;")
        for opt in cmd.options:
            for n in opt.names:
                if opt.takes():
                    takes.append(f"        {name}:{n}) echo {quoted([opt.takes()])} ;;")
    for placeholder, value in (("@COMMANDS@", " ".join(commands)), ("@OPTIONS@", "\n".join(options)),
                               ("@TAKES@", "\n".join(takes))):
        if placeholder not in template:
            fail(f"the completion template has no {placeholder}")
        template = template.replace(placeholder, value)
    return template


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", required=True, help="meshrun's version, for the page's header")
    parser.add_argument("--man", metavar="OUT.1", help="write the man page here")
    parser.add_argument("--completion", nargs=2, metavar=("TEMPLATE", "OUT.bash"),
                        help="write the bash completion made from TEMPLATE here")
    parser.add_argument("command", nargs="+", metavar="MESHRUN", help="the command that runs meshrun")
    args = parser.parse_args()

    top = Help(help_text(args.command, []))
    if not top.commands:
        fail("`meshrun --help` lists no command")
    commands = {name: Help(help_text(args.command, [name])) for name, _ in top.commands}
    if args.man:
        with open(args.man, "w") as f:
            f.write(man_page(args.version, top, commands))
    if args.completion:
        template, out = args.completion
        with open(template) as f:
            text = completion(f.read(), top, commands)
        with open(out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
