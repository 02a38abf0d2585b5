// YAML text for the rendered rule files.
//
// std.manifestYamlDoc sorts keys alphabetically (so `annotations` would come before
// `expr`) and has no comments. This emitter keeps a fixed key order for the keys that
// rule files and Kubernetes objects put first, writes multi-line strings as literal
// blocks (`|`), folds long descriptions (`>-`), and prints the hidden field
// `'#'` of an object in a list as a comment above it.
//
// It handles what the mixin produces: objects, lists, strings, numbers, booleans and
// null; lists directly inside lists are refused. tests/deploy.rs parses the rendered
// files and compares them with the mixin's own JSON, so a quoting mistake here fails
// a test rather than changing a rule.

local keyOrder = [
  'apiVersion',
  'kind',
  'metadata',
  'spec',
  'name',
  'interval',
  'record',
  'alert',
  'expr',
  'for',
  'keep_firing_for',
  'labels',
  'annotations',
  'summary',
  'description',
  'runbook_url',
  'groups',
  'rules',
];

// Keys of keyOrder first, in that order, then the others alphabetically.
local rank = { [keyOrder[i]]: '0' + std.char(65 + i) for i in std.range(0, std.length(keyOrder) - 1) };
local sortKey(k) = if std.objectHas(rank, k) then rank[k] else '1' + k;

local fields(o) = std.sort(std.objectFields(o), keyF=sortKey);

local every(xs, f) = std.length(std.filter(function(x) !f(x), xs)) == 0;
local charSet(chars) = { [c]: true for c in std.stringChars(chars) };

local letters = charSet('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_');
local digits = charSet('0123456789');
local printable = charSet('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');
// Words that YAML 1.1 readers (Prometheus' among them) take for booleans or null.
local reserved = { [w]: true for w in ['true', 'false', 'null', 'yes', 'no', 'on', 'off', 'y', 'n'] };

// Whether `s` (as characters `cs`) contains the two characters `a` then `b`.
local hasPair(cs, a, b) =
  std.length(std.filter(function(i) cs[i] == a && cs[i + 1] == b, std.range(0, std.length(cs) - 2))) > 0;

// A string that can be written without quotes and still reads back as that string.
// Either it starts with a letter or `_` (so no indicator character starts it), has no
// `: ` or ` #` (a mapping value or a comment) and does not end in `:` or a space; or
// it is a duration such as `10m`.
local isPlain(s) =
  local cs = std.stringChars(s);
  local n = std.length(cs);
  n > 0
  && (
    (
      std.objectHas(letters, cs[0])
      && every(cs, function(c) std.objectHas(printable, c))
      && cs[n - 1] != ':'
      && cs[n - 1] != ' '
      && !hasPair(cs, ':', ' ')
      && !hasPair(cs, ' ', '#')
      && !(n <= 5 && std.objectHas(reserved, std.asciiLower(s)))
    )
    || (
      n >= 2
      && every(cs[0:n - 1], function(c) std.objectHas(digits, c))
      && std.member(['s', 'm', 'h', 'd', 'w', 'y'], cs[n - 1])
    )
  );

local quoted(s) = if isPlain(s) then s else std.escapeStringJson(s);

local foldWidth = 90;
// Keys whose long values are prose, folded over lines; other strings (PromQL, URLs,
// one-line summaries) stay on one line.
local foldKeys = ['description'];

// A long single-line string whose words can be folded over several lines and read
// back unchanged: single spaces between words, nothing YAML would keep as is.
local isFoldable(s) =
  local cs = std.stringChars(s);
  std.length(cs) > foldWidth
  && every(cs, function(c) c != '\n' && c != '\t' && c != '\r')
  && cs[0] != ' '
  && cs[std.length(cs) - 1] != ' '
  && !hasPair(cs, ' ', ' ');

// Words joined into lines of at most foldWidth characters (a longer word gets a line
// of its own). A Go template action (`{{ ... }}`) counts as one word. The accumulators
// are arrays, whose elements jsonnet evaluates once (object fields are evaluated anew
// on every access, which would make these folds exponential).
local fold(s) =
  // [words so far, inside an action]
  local grouped = std.foldl(
    function(acc, w)
      local words = acc[0];
      local n = std.length(words);
      local cs = std.stringChars(w);
      local opens = hasPair(cs, '{', '{'), closes = hasPair(cs, '}', '}');
      if acc[1] then [words[0:n - 1] + [words[n - 1] + ' ' + w], !closes]
      else [words + [w], opens && !closes],
    std.split(s, ' '),
    [[], false]
  )[0];
  // [finished lines, current line]
  local r = std.foldl(
    function(acc, w)
      local line = acc[1];
      if line == '' then [acc[0], w]
      else if std.length(line) + 1 + std.length(w) <= foldWidth then [acc[0], line + ' ' + w]
      else [acc[0] + [line], w],
    grouped,
    [[], '']
  );
  r[0] + [r[1]];

// `head` (such as `key:` or `-`) followed by a scalar: one line, or a block.
local scalarLines(head, v, indent, foldable=false) =
  if std.isString(v) && std.member(std.stringChars(v), '\n') then
    local body = if std.endsWith(v, '\n') then std.substr(v, 0, std.length(v) - 1) else v;
    local lines = std.split(body, '\n');
    if std.endsWith(body, '\n') then error 'manifest: more than one trailing newline in ' + std.escapeStringJson(v)
    else if std.startsWith(lines[0], ' ') then error 'manifest: block string starts with a space: ' + std.escapeStringJson(v)
    else
      [head + (if std.endsWith(v, '\n') then ' |' else ' |-')]
      + [if l == '' then '' else indent + '  ' + l for l in lines]
  else if std.isString(v) && foldable && isFoldable(v) then
    [head + ' >-'] + [indent + '  ' + l for l in fold(v)]
  else if std.isString(v) then [head + ' ' + quoted(v)]
  else if std.isObject(v) then [head + ' {}']
  else if std.isArray(v) then [head + ' []']
  else [head + ' ' + std.manifestJson(v)];

local nonEmpty(v) = (std.isObject(v) && std.length(std.objectFields(v)) > 0) || (std.isArray(v) && std.length(v) > 0);

// The lines of an object's fields, of a field, of a list and of a list item, at `indent`.
local
  objectLines(o, indent) =
    std.flattenArrays([fieldLines(k, o[k], indent) for k in fields(o)]),

  fieldLines(k, v, indent) =
    local head = indent + quoted(k) + ':';
    if std.isObject(v) && nonEmpty(v) then [head] + objectLines(v, indent + '  ')
    else if std.isArray(v) && nonEmpty(v) then [head] + listLines(v, indent + '  ')
    else scalarLines(head, v, indent, std.member(foldKeys, k)),

  listLines(a, indent) =
    std.flattenArrays([itemLines(a[i], indent, i == 0) for i in std.range(0, std.length(a) - 1)]),

  // An object's hidden field '#' becomes comment lines above it, after a blank line
  // unless it is the first item.
  itemLines(v, indent, first) =
    local comment = if std.isObject(v) && std.objectHasAll(v, '#') then std.rstripChars(v['#'], '\n') else null;
    local commentLines =
      if comment == null then []
      else (if first then [] else [''])
           + [if l == '' then indent + '#' else indent + '# ' + l for l in std.split(comment, '\n')];
    commentLines + (
      if std.isObject(v) && nonEmpty(v) then
        local lines = objectLines(v, indent + '  ');
        [indent + '- ' + std.substr(lines[0], std.length(indent) + 2, std.length(lines[0]))] + lines[1:]
      else if std.isArray(v) && nonEmpty(v) then error 'manifest: a list directly inside a list'
      else scalarLines(indent + '-', v, indent)
    );

{
  // An object as a YAML document (no leading `---`), without the final newline:
  // `jsonnet -S` adds it.
  yaml(o):: std.join('\n', objectLines(o, '')),

  // `#` comment lines for the top of a file.
  comment(text):: std.join('', [if l == '' then '#\n' else '# ' + l + '\n' for l in std.split(std.rstripChars(text, '\n'), '\n')]),
}
