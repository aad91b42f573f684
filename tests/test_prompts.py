"""Prompt files render to the paper's exact message lists (PAPER-SPEC B.1-B.4), character for character."""

from __future__ import annotations

from pathlib import Path

import pytest

from utilanno.annotate import prompts
from utilanno.errors import InputFormatError

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
QUERY, PASSAGES, ANSWER = "q?", ["t1 text one", "t2 text two"], "ans"


def U(content):  # noqa: N802
    return {"role": "user", "content": content}


def A(content):  # noqa: N802
    return {"role": "assistant", "content": content}


PASSAGE_TURNS = [
    U("[1] t1 text one"),
    A("Received passage [1]."),
    U("[2] t2 text two"),
    A("Received passage [2]."),
]

# Transcribed from PAPER-SPEC B.1-B.4: `\n` is a real newline; spacing is exact (double spaces,
# trailing blanks).
EXPECTED = {
    "relsel.yaml": [
        U(
            "You are the relevance judger, an intelligent assistant that can select the passages that are "
            "relevant to the question."
        ),
        A("Yes, I am the relevance judger."),
        U(
            "I will provide you with 2 passages, each indicated by number identifier []. \nSelect the "
            "passages that are relevant to the question: q?."
        ),
        A("Okay, please provide the passages."),
        *PASSAGE_TURNS,
        U(
            "Search Query: q?.\n        Directly output the passages you selected that are relevant to the "
            "question. The format of the output is: 'My selection:[[i],[j],...].'. Only response the "
            "selection results, do not say any word or explain. \n        "
        ),
    ],
    "pseudo_answer.yaml": [
        U(
            "You are a faithful question and answer assistant. Answer the question based on the given "
            "information with one or a few sentences without the source."
        ),
        A("Yes, i am the faithful question and answer assistant."),
        U(
            "Given the information: \nt1 text one\nt2 text two\n Answer the following question based on "
            "the given information with one or a few sentences without the source.\n Question: q?\n\n "
            "Answer:"
        ),
    ],
    "utilsel.yaml": [
        U(
            "You are the utility judger, an intelligent assistant that can select the passages that have "
            "utility in answering the question."
        ),
        A("Yes, I am the utility judger."),
        U(
            "I will provide you with 2 passages, each indicated by number identifier []. \n I will also "
            "provide you with a reference answer to the question. \nSelect the passages that have utility "
            "in generating the reference answer to the following question from the 2 passages: q?."
        ),
        A("Okay, please provide the passages and the reference answer."),
        *PASSAGE_TURNS,
        U(
            "Question: q?. \n Reference answer: ans. \n\n The requirements for judging whether a passage "
            "has utility in answering the question are: The passage has utility in answering the question, "
            "meaning that the passage not only be relevant to the question, but also be useful in "
            "generating a correct, reasonable and perfect answer to the question. \n\n        Directly "
            "output the passages you selected that have utility in generating the reference answer to the "
            "question. The format of the output is: 'My selection:[[i],[j],...].'. Only response the "
            "selection results, do not say any word or explain. \n        "
        ),
    ],
    "utilrank.yaml": [
        U(
            "You are RankGPT, an intelligent assistant that can rank passages based on their utility in "
            "generating the given reference answer to the question."
        ),
        A("Yes, i am RankGPT."),
        U(
            "I will provide you with 2 passages, each indicated by number identifier [].  I will also give "
            "you a reference answer to the question. \nRank the passages based on their utility in "
            "generating the reference answer to the question: q?."
        ),
        A("Okay, please provide the passages and the reference answer."),
        *PASSAGE_TURNS,
        U(
            "Question: q?. \n\n Reference answer: ans\n\n Rank the 2 passages above based on their utility "
            "in generating the reference answer to the question. The passages should be listed in utility "
            "descending order using identifiers.  The passages that have utility generating the reference "
            "answer to the question should be listed first. The output format should be [] > [] > [] > "
            "..., e.g., [i] > [j] > [k] > ... Only response the ranking results, do not say any word or "
            "explain."
        ),
    ],
}
EXPECTED["hybrid.yaml"] = EXPECTED["utilsel.yaml"]  # the Hybrid Test's judge: the UtilSel prompt (B.9)
OUTPUT = {
    "hybrid.yaml": "selection",
    "relsel.yaml": "selection",
    "pseudo_answer.yaml": "answer",
    "utilsel.yaml": "selection",
    "utilrank.yaml": "ranking",
}


def test_relsel_closing_turn_structure():
    """The final turn is "Search Query: " + query + "." + a triple-quoted instruction (B.1)."""
    instruction = """
        Directly output the passages you selected that are relevant to the question. The format of the output is: 'My selection:[[i],[j],...].'. Only response the selection results, do not say any word or explain. 
        """  # noqa: E501, W291
    assert EXPECTED["relsel.yaml"][-1]["content"] == "Search Query: " + QUERY + "." + instruction


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_messages(name):
    prompt = prompts.load(PROMPTS / name)
    assert prompt.output == OUTPUT[name]
    got = prompt.render(QUERY, PASSAGES, answer=ANSWER, passage_words=300)
    assert len(got) == len(EXPECTED[name])
    for k, (g, e) in enumerate(zip(got, EXPECTED[name], strict=True)):
        assert g == e, f"{name} message {k}"
    assert got == EXPECTED[name]


@pytest.mark.parametrize("name", ["relsel.yaml", "utilsel.yaml", "utilrank.yaml"])
def test_selection_and_ranking_truncate_passages(name):
    prompt = prompts.load(PROMPTS / name)
    assert prompt.truncate
    long = "w1  w2\tw3\nw4 w5 w6"
    msgs = prompt.render("q", [long, "short one"], answer="a", passage_words=3)
    passage_msgs = [m["content"] for m in msgs if m["content"].startswith("[") and m["role"] == "user"]
    assert passage_msgs == ["[1] w1 w2 w3", "[2] short one"]
    # not cut when short enough: the text is kept as it is (spacing included)
    msgs = prompt.render("q", [long], answer="a", passage_words=6)
    assert "[1] " + long in [m["content"] for m in msgs]


def test_pseudo_answer_does_not_truncate():
    prompt = prompts.load(PROMPTS / "pseudo_answer.yaml")
    assert prompt.truncate is False
    long = " ".join(f"w{i}" for i in range(500))
    msgs = prompt.render("q", [long, "two"], passage_words=3)
    assert "\n" + long + "\ntwo\n" in msgs[-1]["content"]


def test_truncate_words():
    assert prompts.truncate_words("a b c d", 2) == "a b"
    assert prompts.truncate_words("a  b", 2) == "a  b"
    assert prompts.truncate_words(" a\nb  c ", 2) == "a b"
    assert prompts.truncate_words("", 3) == ""


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_braces_are_kept_literally(name):
    prompt = prompts.load(PROMPTS / name)
    msgs = prompt.render(
        "what is {x}? {query} {0}",
        ["{x} and {passage}", "{}{{}}"],
        answer="{answer} {num}",
        passage_words=300,
    )
    text = "\n".join(m["content"] for m in msgs)
    assert "what is {x}? {query} {0}" in text
    assert "{x} and {passage}" in text
    assert "{}{{}}" in text
    if name != "relsel.yaml" and name != "pseudo_answer.yaml":
        assert "Reference answer: {answer} {num}" in text


def test_format_passage():
    assert prompts.format_passage("", "text") == "text"
    assert prompts.format_passage(None, "text") == "text"
    assert prompts.format_passage("Title", "body text") == "Title body text"
    assert prompts.format_passage(" T ", " b ") == "T   b"


def test_messages_hash():
    msgs = prompts.load(PROMPTS / "relsel.yaml").render(QUERY, PASSAGES, passage_words=300)
    h = prompts.messages_hash(msgs)
    assert h == prompts.messages_hash([dict(m) for m in msgs])
    assert h == prompts.messages_hash([{"content": m["content"], "role": m["role"]} for m in msgs])
    assert len(h) == 16 and int(h, 16) >= 0
    changed = [dict(m) for m in msgs]
    changed[-1]["content"] += " "
    assert prompts.messages_hash(changed) != h
    assert prompts.messages_hash(msgs[:-1]) != h
    swapped = [dict(m) for m in msgs]
    swapped[0]["role"] = "system"
    assert prompts.messages_hash(swapped) != h
    # pinned: the hash is kept beside every output, so it must not change between versions
    assert prompts.messages_hash([{"role": "user", "content": "hi"}]) == _pinned_hash()


def _pinned_hash():
    import hashlib

    return hashlib.sha256(b'[{"content":"hi","role":"user"}]').hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# Load errors

GOOD = """output: selection
opening:
  - role: user
    content: "Select for {query} among {num}."
passage:
  - role: user
    content: "[{i}] {passage}"
closing:
  - role: user
    content: "Done: {query} {answer}"
"""


def _write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_good_file(tmp_path):
    prompt = prompts.load(_write(tmp_path, GOOD))
    assert prompt.output == "selection" and prompt.truncate is True
    assert prompt.render("Q", ["a", "b"], answer="x") == [
        U("Select for Q among 2."),
        U("[1] a"),
        U("[2] b"),
        U("Done: Q x"),
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("output: selection\nopening: [\n  - role: user\n", "YAML"),
        ("- just\n- a list\n", "mapping"),
        (GOOD + "extra: 1\n", "unknown keys"),
        (GOOD.replace("output: selection", "output: scores"), "output"),
        (GOOD.replace("output: selection\n", ""), "output"),
        (
            GOOD.replace('- role: user\n    content: "[{i}]', '- role: judge\n    content: "[{i}]'),
            "passage[0]",
        ),
        (GOOD.replace("role: user", "role: User", 1), "opening[0]"),
        (GOOD.replace('content: "Done: {query} {answer}"', "content: 3"), "closing[0]"),
        (GOOD.replace("{query} among", "{qeury} among"), "placeholder"),
        (GOOD.replace("[{i}]", "[{idx}]"), "placeholder"),
        (GOOD.replace("{num}", "{0}"), "placeholder"),
        (GOOD.replace("{num}", "{num"), "placeholder"),
        ("output: answer\nopening: []\nclosing: []\n", "no messages"),
        ("output: answer\nopening: {role: user, content: x}\n", "opening"),
    ],
)
def test_load_errors(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(InputFormatError) as info:
        prompts.load(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_load_error_for_bad_yaml_names_the_line(tmp_path):
    path = _write(tmp_path, 'output: selection\nopening:\n  - role: user\n    content: "unclosed\n')
    with pytest.raises(InputFormatError) as info:
        prompts.load(path)
    assert info.value.path == str(path)
    assert info.value.line is not None and info.value.line >= 1


@pytest.mark.parametrize("placeholder", ["{query.text}", "{num[0]}", "{qeury}"])
def test_load_error_for_attribute_and_index_placeholders(tmp_path, placeholder):
    path = _write(tmp_path, GOOD.replace("{query} among", placeholder + " among"))
    with pytest.raises(InputFormatError, match="placeholder"):
        prompts.load(path)


def test_load_rejects_a_non_boolean_truncate(tmp_path):
    path = _write(tmp_path, GOOD + 'truncate: "false"\n')
    try:
        prompt = prompts.load(path)
    except InputFormatError:
        return
    assert prompt.truncate is False
