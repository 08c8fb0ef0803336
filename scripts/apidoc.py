#!/usr/bin/env python3
"""API documentation from the public headers' plain /* */ comments.

The headers document each MIM_API function in the comment right above it (one comment
may cover a run of declarations, e.g. mim_cache_create and mim_cache_delete). This script
reads them once and serves three build steps:

  apidoc.py man OUTDIR VERSION TEMPLATE HEADER...  section 3 pages, one per function,
                                                   plus the overview page from TEMPLATE
  apidoc.py filter HEADER                          Doxygen INPUT_FILTER: the header with
                                                   its comments turned into doc comments
  apidoc.py check-html HTMLDIR HEADER...           every function and its text is in the
                                                   HTML reference (for the tests)
  apidoc.py names HEADER...                        the functions, one a line (uninstall)
"""
import html
import os
import re
import sys

FUNC_NAME = re.compile(r"(\w+)\s*\(")
TYPEDEF_OPEN = re.compile(r"typedef (struct|enum) (\w+) \{")
FN_TYPEDEF = re.compile(r"typedef [^;]*?\(\*(\w+)\)")


class Func:
    def __init__(self, name, decl, doc, line, direct):
        self.name = name
        self.decl = decl  # the declaration without MIM_API, as written
        self.doc = doc  # the comment's text, dedented, lines kept
        self.line = line  # index of the declaration's first line
        self.direct = direct  # the comment is right above this declaration


def comment_text(lines):
    """The text of a /* */ comment given as its source lines."""
    body = "\n".join(lines).strip()
    body = body[2:] if body.startswith("/*") else body
    body = body[:-2] if body.endswith("*/") else body
    out = []
    for raw in body.split("\n"):
        s = raw.strip()
        if s.startswith("*"):
            s = raw.split("*", 1)[1]
            s = s[1:] if s.startswith(" ") else s
        out.append(s.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    if out:
        out[0] = out[0].lstrip()
    return out


def read_comment(lines, i):
    """(end index, text lines) of the comment starting on line i."""
    j = i
    while "*/" not in lines[j]:
        j += 1
    return j, comment_text(lines[i : j + 1])


def parse(path):
    """Functions and typedefs of one header: ([Func], {type name: source text})."""
    lines = open(path, encoding="utf-8").read().split("\n")
    funcs, types = [], {}
    fresh = None  # comment directly above what comes next
    top = None  # last comment at column 0 (the one above a typedef, a group...)
    group = None  # doc of the previous declaration when declarations follow each other
    seen_code = False  # the first comment of the file describes the file, not a decl
    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if s.startswith("/*"):
            end, text = read_comment(lines, i)
            if seen_code:
                fresh = text
                if line.startswith("/*"):
                    top = text
            i = end + 1
            continue
        if not s:
            i += 1
            continue
        seen_code = True
        if s.startswith("MIM_API"):
            j = i
            while ";" not in lines[j]:
                j += 1
            decl = "\n".join(lines[i : j + 1]).replace("MIM_API ", "", 1)
            name = FUNC_NAME.search(decl).group(1)
            doc = fresh if fresh is not None else (group if group is not None else top)
            funcs.append(Func(name, decl, doc or [], i, fresh is not None))
            group, fresh = doc, None
            i = j + 1
            continue
        group, fresh = None, None
        m = TYPEDEF_OPEN.match(s)
        if m:
            j = i
            while not lines[j].startswith("}"):
                j += 1
            types[m.group(2)] = "\n".join(lines[i : j + 1])
            i = j + 1
            continue
        m = FN_TYPEDEF.match(s)
        if m:
            j = i
            while ";" not in lines[j]:
                j += 1
            types[m.group(1)] = "\n".join(lines[i : j + 1])
            i = j + 1
            continue
        i += 1
    return funcs, types


# ---- man pages ----


def roff_line(s):
    s = s.replace("\\", "\\e")
    return "\\&" + s if s.startswith((".", "'")) else s


def summary(doc):
    """The first sentence (outside parentheses), for the NAME line."""
    text = " ".join(x.strip() for x in doc).strip()
    depth, end = 0, len(text)
    for i, c in enumerate(text):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth == 0 and c in ".:;" and (i + 1 == len(text) or text[i + 1] == " "):
            end = i
            break
    first = text[:end]
    if len(first) > 90:
        first = first[:87].rsplit(" ", 1)[0] + "..."
    return first or "libmomento-im function"


def roff_body(doc):
    """Paragraphs (blank lines) as .PP; indented lines stay as written (.nf)."""
    out, verbatim, start = [], False, True
    for line in doc:
        if not line.strip():
            if verbatim:
                out.append(".fi")
                verbatim = False
            start = True
            continue
        if start:
            out.append(".PP")
            start = False
        indented = line.startswith("  ")
        if indented != verbatim:
            out.append(".nf" if indented else ".fi")
            verbatim = indented
        out.append(roff_line(line if indented else line.strip()))
    if verbatim:
        out.append(".fi")
    return out


def th(title, version):
    return '.TH %s 3 "" "libmomento-im %s" "libmomento-im API"' % (title.upper(), version)


def man_page(f, header, others, types, version):
    out = [
        ".\\\" Generated by scripts/apidoc.py from include/momento/%s: edit the header." % header,
        th(f.name, version),
        ".SH NAME",
        "%s \\- %s" % (f.name, roff_line(summary(f.doc))),
        ".SH LIBRARY",
        "libmomento-im (\\fB\\-lmomento\\-im\\fP; pkg-config \\fBlibmomento\\-im\\fP;"
        " CMake \\fBmomento\\-im::momento\\-im\\fP)",
        ".SH SYNOPSIS",
        ".nf",
        ".B #include <momento/%s>" % header,
        ".PP",
    ]
    out += [roff_line(x) for x in f.decl.split("\n")]
    out += [".fi", ".SH DESCRIPTION"] + roff_body(f.doc)
    used = [t for t in types if re.search(r"\b%s\b" % t, f.decl)]
    if used:
        out += [".SH TYPES", ".nf"]
        for t in used:
            out += [roff_line(x) for x in types[t].split("\n")] + [""]
        out[-1] = ".fi"
    see = ["libmomento\\-im (3)"] + ["%s (3)" % o for o in others if o != f.name]
    out += [".SH SEE ALSO", ",\n".join(".BR " + x for x in see)]
    return "\n".join(out) + "\n"


def overview(template, headers, version):
    listing = []
    for header, funcs in headers:
        listing += [".SS <momento/%s>" % header]
        for f in funcs:
            listing += [".TP", ".BR %s (3)" % f.name, roff_line(summary(f.doc))]
    text = open(template, encoding="utf-8").read()
    return text.replace("@VERSION@", version).replace("@FUNCTIONS@", "\n".join(listing))


def cmd_man(outdir, version, template, paths):
    os.makedirs(outdir, exist_ok=True)
    headers = []
    for p in paths:
        funcs, types = parse(p)
        headers.append((os.path.basename(p), funcs))
        names = [f.name for f in funcs]
        for f in funcs:
            page = man_page(f, os.path.basename(p), names, types, version)
            with open(os.path.join(outdir, f.name + ".3"), "w", encoding="utf-8") as fh:
                fh.write(page)
    with open(os.path.join(outdir, "libmomento-im.3"), "w", encoding="utf-8") as fh:
        fh.write(overview(template, headers, version))


# ---- Doxygen input filter ----

DOXY_SPECIAL = re.compile(r"([\\@&$#%<>])")


def doxy_escape(s):
    """Doxygen reads \\ @ & $ # % < > in comments as commands or markup: keep them text.
    Between double quotes it takes everything literally, so there they stay as written."""
    parts = s.split('"')
    for i in range(0, len(parts), 2):
        parts[i] = DOXY_SPECIAL.sub(r"\\\1", parts[i])
    return '"'.join(parts)


def doc_comment(lines):
    out, first = [], True
    for raw in lines:
        if first:
            m = re.match(r"(\s*)(.*?)/\*(.*)$", raw)
            lead, code, rest = m.group(1), m.group(2), m.group(3)
            opener = "/**<" if code.strip() else "/**"
            out.append(lead + code + opener + doxy_escape(rest))
            first = False
        else:
            out.append(doxy_escape(raw))
    return "\n".join(out)


def cmd_filter(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    funcs, _ = parse(path)
    inject = {f.line: f.doc for f in funcs if not f.direct and f.doc}
    out, i, file_doc_done = [], 0, False
    while i < len(lines):
        line = lines[i]
        if i in inject:
            body = [" * " + doxy_escape(x) if x else " *" for x in inject[i]]
            out += ["/**"] + body + [" */"]
        if (
            "/*" in line
            and "/**" not in line
            and '"' not in line.split("/*")[0]
            and not line.lstrip().startswith("#")
        ):
            end, text = read_comment(lines, i)
            block = lines[i : end + 1]
            if not file_doc_done and line.startswith("/*"):
                out += ["/** @file"] + [" * " + doxy_escape(x) if x else " *" for x in text]
                out += [" */"]
            elif re.match(r"\s*/\* -{3,}", line):
                out += block  # a section divider, not the doc of what follows
            else:
                out += doc_comment(block).split("\n")
            file_doc_done = True
            i = end + 1
            continue
        if line.strip():
            file_doc_done = True
        out.append(line)
        i += 1
    sys.stdout.write("\n".join(out))


# ---- the HTML check ----


def page_text(path):
    raw = open(path, encoding="utf-8", errors="replace").read()
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw)))


def cmd_check_html(htmldir, paths):
    """Each function's entry and text must be on its header's page (not only in the
    verbatim copy of the header, *_source.html, which shows the raw comments)."""
    missing = []
    for p in paths:
        base = os.path.basename(p)
        page = os.path.join(htmldir, base.replace("_", "__").replace(".", "_8") + ".html")
        text = page_text(page) if os.path.exists(page) else ""
        for f in parse(p)[0]:
            words = " ".join(" ".join(f.doc).split()[:12])
            if "%s()" % f.name not in text.replace(" ()", "()"):
                missing.append("%s: no entry in %s" % (f.name, page))
            elif words and text.count(words) < 1:
                missing.append("%s: its text is missing from %s (%r)" % (f.name, page, words))
    for m in missing:
        print("apidoc: " + m)
    return 1 if missing else 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "man":
        cmd_man(argv[2], argv[3], argv[4], argv[5:])
        return 0
    if len(argv) == 3 and argv[1] == "filter":
        cmd_filter(argv[2])
        return 0
    if argv[1:2] == ["names"]:
        print("\n".join(f.name for p in argv[2:] for f in parse(p)[0]))
        return 0
    if len(argv) >= 3 and argv[1] == "check-html":
        return cmd_check_html(argv[2], argv[3:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
