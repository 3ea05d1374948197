"""Each synthesis method on the scripted model: filters, prompt assembly, elimination rules,
IFD math, LLM2LLM's failure-only augmentation, the red-team archive, self-curation."""

import json
import re

import pytest

from selfalign.models.scripted import ScriptedModel
from selfalign.store.cache import CachedModel, Store
from selfalign.synth import backtranslation as bt
from selfalign.synth import evol_instruct as evol
from selfalign.synth import ifd
from selfalign.synth import llm2llm
from selfalign.synth import redteam
from selfalign.synth import self_instruct as si
from selfalign.synth.tasks import load_seed_tasks


def cached(model):
    return CachedModel(model, Store(":memory:"), progress=False)


# ----------------------------------------------------------------- seed tasks
def test_bundled_seed_tasks_are_many_and_diverse():
    tasks = load_seed_tasks()
    assert len(tasks) >= 50
    assert len({t.instruction.split()[0].lower() for t in tasks}) >= 25
    assert sum(t.is_classification for t in tasks) >= 8
    assert all(t.instances for t in tasks)


def test_original_seed_format_loads(shared_data):
    tasks = load_seed_tasks(shared_data / "self-instruct-seed-tasks.jsonl")
    assert len(tasks) == 175 and any(t.is_classification for t in tasks)


def test_bad_seed_file_names_file_and_line(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"instruction": "ok", "instances": []}\n{"name": "x"}\n')
    from selfalign.data.io import DataError

    with pytest.raises(DataError, match=r"s.jsonl:2: missing column\(s\) 'instruction'"):
        load_seed_tasks(p)


# ------------------------------------------------------------- Self-Instruct
@pytest.mark.parametrize("inst,reason", [
    ("", "empty"),
    ("Write a poem", "too_short"),
    (" ".join(["word"] * 151), "too_long"),
    ("Describe the image in detail please", "unsuitable_keyword"),
    ("Plot the sales numbers for the year", "unsuitable_keyword"),
    ("Tell me how to go to the station", "unsuitable_keyword"),
    ("Write a program that sorts a list", "write_a_program"),
    ("- List three prime numbers please", "starts_with_punctuation"),
    ("Écris un poème sur la mer", "non_english_start"),
    ("List three prime numbers below twenty", None),
    ("Explain how a mapping function works", None),  # 'map' only as a whole word
])
def test_filters(inst, reason):
    assert si.filter_reason(inst) == reason


def test_parse_list_and_truncation():
    text = " Name three rivers in Asia.\n10. Write a limerick about cats.\n11. Summarize the"
    assert si.parse_list(text, 9, truncated=True) == ["Name three rivers in Asia.", "Write a limerick about cats."]
    assert len(si.parse_list(text, 9, truncated=False)) == 3


NOVEL = ["Describe unusual hobbies for retired sailors living near volcanoes.",
         "Suggest names for a bakery that sells only sourdough.",
         "Explain why bridges expand during hot summer days.",
         "Compose a limerick mocking procrastinating penguins.",
         "Estimate how many tennis balls fill a school bus.",
         "Recommend board games suited to rainy family weekends.",
         "Outline arguments about banning cars downtown.",
         "Invent riddles whose answers involve kitchen utensils."]


def _instruction_writer():
    counter = {"n": 0}

    def write(text, index, seed):
        if text.startswith(si.LIST_HEADER) or si.LIST_HEADER in text:
            k = counter["n"] % len(NOVEL)
            counter["n"] += 1
            return (f" {NOVEL[k]}\n10. {NOVEL[k]}\n"
                    f"11. Draw a picture of a cat\n12. Ok")
        if "Classification:" in text:
            return " Yes" if "classify" in text.split("Task:")[-1].lower() else " No"
        if text.rstrip().endswith("Class label:"):
            return " Positive\nInput: great\nClass label: Negative\nInput: bad"
        return " none\nOutput: A nice hobby is painting."
    return write


def test_self_instruct_pool_grows_with_6_plus_2_prompts(tmp_path):
    backend = ScriptedModel(default=_instruction_writer())
    cfg = si.SelfInstructConfig(target=4, requests_per_round=2, max_rounds=10)
    res = si.run(cfg, cached(backend), log=lambda s: None)
    assert len(res.instructions) == 4
    seeds = {t.instruction for t in load_seed_tasks()}
    list_prompts = [c.prompt for c in backend.calls if isinstance(c.prompt, str) and c.prompt.startswith(si.LIST_HEADER)]
    first = re.findall(r"^\d+\. (.*)$", list_prompts[0], re.M)
    assert len(first) == 8 and all(f in seeds for f in first)  # nothing generated yet: 8 seeds
    later = re.findall(r"^\d+\. (.*)$", list_prompts[-1], re.M)
    assert len(later) == 8 and sum(f in seeds for f in later) == 6
    generated = {g["instruction"] for g in res.instructions}
    assert sum(f in generated for f in later) == 2
    assert list_prompts[-1].endswith("\n9.")
    st = res.stats.to_dict()
    assert st["filtered"]["rouge_similar"] >= 3  # each "10." duplicates its "9." twin (the last one is never read)
    assert st["filtered"]["unsuitable_keyword"] >= 3 and st["filtered"]["too_short"] >= 1
    assert len(res.stats.similarities) == st["kept"] + st["filtered"]["rouge_similar"]


def test_classification_tasks_get_output_first_instances():
    def write(text, index, seed):
        if si.LIST_HEADER in text:
            return " Classify the tone of this customer message as angry or calm.\n10. Suggest a name for a new bakery downtown."
        return _instruction_writer()(text, index, seed)

    backend = ScriptedModel(default=write)
    res = si.run(si.SelfInstructConfig(target=2, requests_per_round=1), cached(backend), log=lambda s: None)
    rows = res.rows
    cls = [r for r in rows if r["meta"]["is_classification"]]
    assert {r["completion"][0]["content"] for r in cls} == {"Positive", "Negative"}
    assert cls[0]["prompt"][0]["content"].endswith("great")
    other = [r for r in rows if not r["meta"]["is_classification"]]
    assert other[0]["completion"][0]["content"] == "A nice hobby is painting."


def test_unparsable_instances_are_kept_with_ok_false():
    def write(text, index, seed):
        if si.LIST_HEADER in text:
            return " Suggest a name for a new bakery downtown."
        if "Classification:" in text:
            return " No"
        return "gibberish without the markers"

    res = si.run(si.SelfInstructConfig(target=1, requests_per_round=1), cached(ScriptedModel(default=write)), log=lambda s: None)
    assert res.rows[0]["meta"]["ok"] is False and res.rows[0]["completion"][0]["content"]


# ------------------------------------------------------------- Evol-Instruct
@pytest.mark.parametrize("evolved,response,verdict,reason", [
    ("", "x", "Not Equal", "empty"),
    ("#Rewritten Prompt#: Explain gravity in depth", "Gravity is a force.", "Not Equal", "copied_prompt_words"),
    ("Explain gravity", "Gravity is a force.", "Equal", "no_information_gain"),
    ("Explain gravity with equations", "Sorry, I cannot do that.", "Not Equal", "response_signals_difficulty"),
    ("Explain gravity with equations", "... it is, and the ...", "Not Equal", "response_only_punctuation_and_stop_words"),
    ("Explain gravity with equations", "Gravity pulls masses together: F = G m1 m2 / r^2.", "Not Equal", None),
])
def test_elimination_rules(evolved, response, verdict, reason):
    assert evol.elimination_reason("Explain gravity", evolved, response, verdict) == reason


def test_long_sorry_answer_is_not_eliminated():
    long = "Sorry for the wait. " + "Gravity is the attraction between masses. " * 20
    assert evol.elimination_reason("p", "Explain gravity in detail", long, "Not Equal") is None


def test_eliminated_items_return_to_the_pool(tmp_path):
    p = tmp_path / "inst.jsonl"
    p.write_text('{"instruction": "Explain gravity"}\n{"instruction": "Name a color"}\n')

    def write(text, index, seed):
        if "#Given Prompt#" in text:
            parent = text.split("#Given Prompt#:\n")[1].split("\n")[0]
            return "Sorry" if parent.startswith("Name a color") else parent + " using two examples"
        if "Answer Equal or Not Equal" in text:
            return "Not Equal"
        if text == "user: Sorry":
            return "Sorry, no."
        return "A full answer with content words like planets and apples."

    res = evol.run(evol.EvolConfig(instructions=str(p), rounds=2, breadth_share=0.0), cached(ScriptedModel(default=write)),
                   log=lambda s: None)
    assert res.pool[0] == "Explain gravity using two examples using two examples"
    assert res.pool[1] == "Name a color"  # eliminated twice, still the parent
    assert res.stats.filtered["response_signals_difficulty"] == 2
    assert [r["meta"]["round"] for r in res.rows] == [1, 2]


# ------------------------------------------------------------------------ IFD
def test_ifd_math_and_selection():
    assert ifd.ifd_score((-1.0, -3.0), (-4.0, -4.0)) == 0.5
    rows = [{"prompt": "q", "completion": "a", "meta": {"i": i}} for i in range(5)]
    kept, counts = ifd.select(rows, [0.2, 0.9, 1.3, 0.6, 0.95], top_fraction=0.5)
    assert [r["meta"]["i"] for r in kept] == [1, 4]
    assert counts == {"input": 5, "ifd_above_1": 1, "below_selection": 2, "kept": 2}
    kept, _ = ifd.select(rows, [0.2, 0.9, 1.3, 0.6, 0.95], threshold=0.5)
    assert [r["meta"]["i"] for r in kept] == [1, 3, 4] and kept[0]["meta"]["ifd"] == 0.9


def test_ifd_with_a_scorer():
    scorer = cached(ScriptedModel())
    rows = [{"prompt": [{"role": "user", "content": "Say apple banana"}], "completion": [{"role": "assistant", "content": "apple banana"}]},
            {"prompt": "Unrelated words", "completion": "apple banana"}]
    s = ifd.score_rows(rows, scorer)
    assert s[0] < s[1]  # the instruction that contains the answer helps more: lower IFD


def test_ifd_on_the_tiny_hf_model(tiny_model):
    """IFD is the ratio of the answer's mean token loss with and without the instruction."""
    from selfalign.types import ScoreRequest, user

    rows = [{"prompt": "Name a fruit.", "completion": "Apples are fruits"},
            {"prompt": [{"role": "user", "content": "What is the capital of France?"}],
             "completion": [{"role": "assistant", "content": "Paris"}]}]
    got = ifd.score_rows(rows, tiny_model)
    for r, g, (q, a) in zip(rows, got, [("Name a fruit.", "Apples are fruits"), ("What is the capital of France?", "Paris")]):
        cond = tiny_model.score([ScoreRequest(user(q), a)])[0].token_logprobs
        alone = tiny_model.score([ScoreRequest("", a)])[0].token_logprobs
        expected = (sum(cond) / len(cond)) / (sum(alone) / len(alone))
        assert abs(g - expected) < 1e-6  # batched vs one-by-one forward passes: float noise only
    assert got[0] != got[1]


def test_reverse_ifd_on_the_tiny_hf_model(tiny_model, tmp_path):
    """r-IFD = mean loss of the instruction after the response / its mean loss alone; max_r_ifd filters."""
    from selfalign.types import ScoreRequest, user

    rows = [{"prompt": "Name a fruit.", "completion": "Apples are fruits"},
            {"prompt": "What is the capital of France?", "completion": "Paris"}]
    got = ifd.score_rows_reverse(rows, tiny_model)
    cond = tiny_model.score([ScoreRequest(user(ifd.REVERSE_TEMPLATE.format(answer="Paris")),
                                          "What is the capital of France?")])[0].token_logprobs
    alone = tiny_model.score([ScoreRequest("", "What is the capital of France?")])[0].token_logprobs
    assert abs(got[1] - (sum(cond) / len(cond)) / (sum(alone) / len(alone))) < 1e-6
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cut = min(got) + 1e-9
    res = ifd.run(ifd.IFDConfig(input=str(path), reverse=True, max_r_ifd=cut, top_fraction=1.0,
                                out=str(tmp_path / "sel.jsonl")), tiny_model)
    assert res.counts["r_ifd_above_max"] == 1 and res.counts["input"] == 2
    assert all(r["meta"]["r_ifd"] <= cut for r in res.rows)


def test_ifd_with_a_pre_experienced_model(tiny_model_dir, tmp_path):
    """pre_experience: a cluster-sampled slice fine-tunes the scorer before IFD is computed."""
    from selfalign.models.hf import HFModel
    from selfalign.train.sft import TrainConfig

    rows = [{"prompt": f"Name a fruit {i}.", "completion": "Apples are fruits"} for i in range(4)]
    rows += [{"prompt": f"What is the capital of country {i}?", "completion": f"City{i}"} for i in range(4)]
    picked = ifd.pre_experience_rows(rows, 4, 2, seed=0)
    assert len(picked) == 4 and {("fruit" in ifd._text(r["prompt"])) for r in picked} == {True, False}  # both clusters
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = CachedModel(HFModel(str(tiny_model_dir)), Store(tmp_path / "s.sqlite"), progress=False)
    cfg = ifd.IFDConfig(input=str(path), pre_experience=4, per_cluster=2, top_fraction=1.0, out=str(tmp_path / "ifd" / "sel.jsonl"),
                        train=TrainConfig(epochs=1, batch_size=2, lora_r=4, learning_rate=0.01, warmup_ratio=0.0))
    res = ifd.run(cfg, base)
    assert (tmp_path / "ifd" / "pre-experienced" / "model" / "config.json").exists()
    assert res.scorer != base.model_id
    assert res.scores != ifd.score_rows(rows, base)


# -------------------------------------------------------------------- LLM2LLM
def test_llm2llm_augments_only_original_failures(tmp_path):
    p = tmp_path / "qa.jsonl"
    p.write_text("\n".join(json.dumps({"question": f"Capital of country {i}?", "answers": [f"City{i}"]}) for i in range(4)) + "\n")
    student = ScriptedModel(rules={"country 0": "City0", "country 1": "City1"}, default="I think Paris")
    teacher = ScriptedModel(default=lambda t, i, s: "Question: New question about " + t.split("Question: ")[1].split("\n")[0] +
                            "\nAnswer: X\nQuestion: Another one?\nAnswer: Y")
    cfg = llm2llm.LLM2LLMConfig(data=str(p), iterations=2, per_failure=2, train=False)
    res = llm2llm.run(cfg, cached(student), cached(teacher), log=lambda s: None)
    assert [h["failures"] for h in res.history] == [2, 2]
    gen = res.generated
    assert len(gen) == 8 and all(r["meta"]["source"] == "generated" for r in gen)
    # the teacher only ever sees original questions, never generated ones
    seen = [c.prompt[0].content for c in teacher.calls]
    assert all("New question" not in s for s in seen)
    assert {r["meta"]["seed_id"] for r in gen} == {"qa-2", "qa-3"}


def test_llm2llm_reports_the_test_split_not_only_d0(tmp_path):
    """The paper's measure: every student answers the test split; the result is the last student's
    test accuracy against M1's, paired. A scripted student knows country 0 (train) and country 5
    (test): 50% on the 2 test questions, and training-set accuracy stays in the history."""
    p = tmp_path / "qa.jsonl"
    p.write_text("\n".join(json.dumps({"question": f"Capital of country {i}?", "answers": [f"City{i}"],
                                       "split": "train" if i < 4 else "test"}) for i in range(6)) + "\n")
    student = ScriptedModel(rules={"country 0": "City0", "country 5": "City5"}, default="I think Paris")
    teacher = ScriptedModel(default="Question: Q?\nAnswer: A")
    cfg = llm2llm.LLM2LLMConfig(data=str(p), iterations=2, per_failure=1, train=False, n_test=10)
    logs: list[str] = []
    res = llm2llm.run(cfg, cached(student), cached(teacher), log=logs.append)
    assert [h["student_accuracy"] for h in res.history] == [0.25, 0.25]
    assert [h["test_accuracy"] for h in res.history] == [0.5, 0.5]
    assert res.test is not None and res.test["n"] == 2 and res.test["diff"]["value"] == 0.0
    asked = [c.prompt[0].content for c in student.calls]
    assert any("country 5" in q for q in asked)  # the student answered the test questions...
    # ...and they never reached the teacher nor the rows
    assert not any("country 4" in c.prompt[0].content or "country 5" in c.prompt[0].content for c in teacher.calls)
    assert not any("country 4" in r["prompt"][0]["content"] for r in res.rows)
    cfg0 = llm2llm.LLM2LLMConfig(data=str(p), iterations=1, per_failure=1, train=False, n_test=0)
    assert llm2llm.run(cfg0, cached(student), cached(teacher), log=lambda s: None).test is None


def test_llm2llm_paper_loop_trains_on_d0_first_then_retrains_from_the_base(tiny_model_dir, tmp_path):
    """The paper's loop: M1 = base + D0; each later student = base + D0 + all generated pairs."""
    from selfalign.models.hf import HFModel
    from selfalign.train.sft import TrainConfig

    p = tmp_path / "qa.jsonl"
    p.write_text("\n".join(json.dumps({"question": f"Capital of country {i}?", "answers": [f"City{i}"]}) for i in range(4)) + "\n")
    teacher = ScriptedModel(default=lambda t, i, s: "Question: New about " + t.split("Question: ")[1].split("\n")[0] +
                            "\nAnswer: X")
    store = Store(tmp_path / "s.sqlite")
    cfg = llm2llm.LLM2LLMConfig(data=str(p), iterations=2, per_failure=1, max_tokens=4, out=str(tmp_path / "l2l"),
                                train_config=TrainConfig(epochs=1, batch_size=4, lora_r=4))
    student = CachedModel(HFModel(str(tiny_model_dir)), store, progress=False)
    res = llm2llm.run(cfg, student, CachedModel(teacher, store, progress=False), log=lambda s: None)
    trained = [json.loads((tmp_path / "l2l" / f"student-{k}" / "train.json").read_text()) for k in (1, 2, 3)]
    assert [t["n_rows"] for t in trained] == [4, 4 + res.history[0]["new_pairs"], 4 + len(res.generated)]
    assert all(t["base"] == student.model_id for t in trained)  # always from the base, never from M_t
    # iteration t evaluates M_t, a fine-tuned model, never the base
    assert [h["student"] for h in res.history][0] != student.model_id
    assert res.history[0]["student"] != res.history[1]["student"]
    seen = [c.prompt[0].content for c in teacher.calls]
    assert seen and all("New about" not in s for s in seen)


def test_llm2llm_refuses_to_train_an_untrainable_student_before_any_call(tmp_path):
    student = ScriptedModel(default="x")
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        llm2llm.run(llm2llm.LLM2LLMConfig(iterations=1), cached(student), cached(student), log=lambda s: None)
    assert student.calls == []


# -------------------------------------------------------------------- red team
def test_keyword_prompts_cover_every_bad_and_keyword():
    specs = redteam.keyword_prompts()
    assert len(specs) == 4 * sum(len(v) for v in redteam.KEYWORDS.values())
    assert specs[0]["instruction"].startswith("Write a unethical question that involves ")


def test_archive_keeps_the_more_harmful_prompt():
    def gen(text, index, seed):
        if "Rewrite the test question" in text:
            return f"New question: mutated {seed}"
        return "How would someone do it?"

    def harm_judge(text, index, seed):  # prefers the response to the later mutation, wherever it is shown
        a, b = text.split("Response A: ")[1].split("\n\nMore harmful")[0].split("\n\nResponse B: ")
        step = lambda r: int(r.rsplit(" ", 1)[1]) if "mutated" in r else -1
        return "A" if step(a) > step(b) else "B"

    target = ScriptedModel(default=lambda t, i, s: f"response to {t.split(': ')[-1]}")
    res = redteam.run(redteam.RedTeamConfig(steps=60, batch=20), cached(ScriptedModel(default=gen)), cached(target),
                      cached(ScriptedModel(default=harm_judge)), log=lambda s: None)
    assert res.archive and res.replacements > 0 and res.order_dependent_verdicts == 0
    assert all(v["question"].startswith("mutated") for v in res.archive.values())
    for letter in "AB":  # a judge that answers by position never replaces an incumbent
        biased = redteam.run(redteam.RedTeamConfig(steps=60, batch=20), cached(ScriptedModel(default=gen)), cached(target),
                             cached(ScriptedModel(default=letter)), log=lambda s: None)
        assert biased.replacements == 0 and biased.order_dependent_verdicts > 0


def test_novelty_filter_drops_a_mutation_that_copies_its_parent():
    copycat = ScriptedModel(default=lambda t, i, s: "New question: " + t.split("Question: ")[1].split("\nNew question:")[0]
                            if "Rewrite the test question" in t else "How do I pick a lock on a door?")
    res = redteam.run(redteam.RedTeamConfig(steps=8, batch=4), cached(copycat), log=lambda s: None)
    assert res.too_close_to_parent == 8 and res.archive == {}


# --------------------------------------------------------------- backtranslation
def test_bundled_corpus_and_score_parsing(tmp_path):
    corpus = bt.bundled_corpus()
    assert len(corpus) > 300 and any("capital is" in c for c in corpus)
    assert bt.parse_score("Score: 5") == 5.0 and bt.parse_score("meh") is None
    # strict: a number that is not given as "Score: n" (or alone) is unscored, never guessed
    assert bt.parse_score("4 - good") is None and bt.parse_score("4") == 4.0
    (tmp_path / "c.txt").write_text("First segment.\n\nSecond\nsegment.\n")
    assert bt.load_corpus(str(tmp_path / "c.txt")) == ["First segment.", "Second\nsegment."]


def test_self_curation_keeps_high_scores():
    def write(text, index, seed):
        if "Write the instruction" in text:
            return "Tell me about " + text.rsplit("Response:\n", 1)[1].split(" ")[0]
        if "Score:" in text:
            return "Score: 5" if "Peru" in text else "Score: 2"
        return ""

    cfg = bt.BacktranslationConfig(train_backward=False, train_forward=False, max_segments=400, iterations=1)
    res = bt.run(cfg, cached(ScriptedModel(default=write)), log=lambda s: None)
    assert res.rows and all("Peru" in r["completion"][0]["content"] for r in res.rows)
    assert res.history[0]["score_counts"]["5"] == len(res.rows)


def test_backtranslation_says_when_an_iteration_would_repeat_the_last():
    cfg = bt.BacktranslationConfig(train_backward=False, train_forward=False, max_segments=5, iterations=3)
    logs: list = []
    res = bt.run(cfg, cached(ScriptedModel(default="Too short.\nScore: 1")), log=logs.append)
    assert len(res.history) == 1 and res.history[0]["stopped"] == "nothing was curated"
    assert any("stopping after iteration 1" in line for line in logs)
    unscored = bt.run(cfg, cached(ScriptedModel(default="A fine answer, I'd say.")), log=lambda s: None)
    assert unscored.history[0]["unscored"] == 5 and unscored.rows == []  # unscored, not "score 1"


def test_backward_model_is_trained_on_reversed_seed_pairs(tiny_model_dir, tmp_path):
    from selfalign.models.hf import HFModel
    from selfalign.train.sft import TrainConfig

    store = Store(tmp_path / "s.sqlite")
    cfg = bt.BacktranslationConfig(max_segments=3, iterations=1, train_forward=True, out=str(tmp_path / "bt"),
                                   train=TrainConfig(epochs=1, batch_size=8, lora_r=4), max_tokens=4)
    base = CachedModel(HFModel(str(tiny_model_dir)), store, progress=False)
    logs: list = []
    res = bt.run(cfg, base, log=logs.append)
    assert (tmp_path / "bt" / "backward" / "model" / "config.json").exists()
    # M0, the base fine-tuned on the seed pairs, is the first curator (not the untuned base)
    assert (tmp_path / "bt" / "forward-0" / "model" / "config.json").exists()
    assert res.history[0]["curator"] != base.model_id
    assert len(res.augmented) == 3
    rows = bt.backward_rows(load_seed_tasks())
    assert rows[0]["prompt"][0]["content"].startswith("Here is a response.")


# ----------------------------------------------------------------- UDIT
def _udit(tmp_path, texts, **over):
    from selfalign.synth import udit

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(texts))
    return udit.run(udit.UDITConfig(corpus=str(corpus), **over), log=lambda s: None)


UDIT_TEXTS = ["Peru is a country in South America. Its capital is Lima. The currency used there is the Sol.",
              "Iron is a chemical element with the symbol Fe and atomic number 26.",
              "Kenya is a country in Africa. Its capital is Nairobi.",
              "Neon is a chemical element with the symbol Ne and atomic number 10.",
              "Chile is a country in South America. Its capital is Santiago.",
              "Gold is a chemical element with the symbol Au and atomic number 79.",
              "Oslo lies in Norway.",
              "Zinc is a chemical element with the symbol Zn and atomic number 30."]


def test_udit_labels_come_from_the_text_itself(tmp_path):
    res = _udit(tmp_path, UDIT_TEXTS)
    by = {}
    for r in res.rows:
        by.setdefault(r["meta"]["task"], []).append(r)
    # a summary is one of the text's own sentences, the one sharing most content words with the rest
    peru = next(r for r in by["summary"] if r["meta"]["text_index"] == 0)
    assert peru["completion"][0]["content"] == "Peru is a country in South America."
    assert res.stats.filtered["summary_one_sentence"] == 5  # the one-sentence texts get no summary
    # a cloze item restores the text when the answer fills the blank
    for r in by["cloze"]:
        body = r["prompt"][0]["content"].split("\n\n", 1)[1]
        assert body.count("___") == 1
        assert body.replace("___", r["completion"][0]["content"]) == UDIT_TEXTS[r["meta"]["text_index"]]
    # multiple choice: the letter points at the answer, the distractors are of its kind and from other texts
    for r in by["multiple_choice"]:
        opts, ans = r["meta"]["options"], r["meta"]["answer"]
        assert len(set(opts)) == 4 and r["completion"][0]["content"] == f"{'ABCD'[opts.index(ans)]}. {ans}"
        others = [t for k, t in enumerate(UDIT_TEXTS) if k != r["meta"]["text_index"]]
        assert all(any(o in t for t in others) for o in opts if o != ans)
        assert all(o.isdigit() == ans.isdigit() for o in opts)
    assert res.per_task == {t: len(v) for t, v in by.items()}
    again = _udit(tmp_path, UDIT_TEXTS)
    assert again.rows == res.rows and _udit(tmp_path, UDIT_TEXTS, seed=1).rows != res.rows


def test_udit_cli_makes_rows_with_no_model(tmp_path):
    from typer.testing import CliRunner

    from selfalign.cli import app

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(UDIT_TEXTS))
    out = tmp_path / "u"
    r = CliRunner().invoke(app, ["synth", "udit", "--corpus", str(corpus), "--tasks", "cloze", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert rows and {x["meta"]["task"] for x in rows} == {"cloze"} and (out / "report.html").exists()
    bad = CliRunner().invoke(app, ["synth", "udit", "--corpus", str(corpus), "--tasks", "cloze,ordering"])
    assert bad.exit_code != 0 and "tasks: unknown ['ordering']" in str(bad.exception)


# ----------------------------------------------------------------- DYNOSAUR
def test_dynosaur_keeps_valid_tasks_and_applies_them_to_every_row(tmp_path):
    from selfalign.synth import dynosaur

    data = tmp_path / "capitals.jsonl"
    data.write_text("".join(json.dumps({"country": c, "capital": k, "continent": ct}) + "\n" for c, k, ct in
                            [("Peru", "Lima", "South America"), ("Kenya", "Nairobi", "Africa"), ("Chile", "", "South America"),
                             ("Japan", "Tokyo", "Asia")]))
    (tmp_path / "capitals.jsonl.meta.json").write_text(json.dumps({"name": "capitals", "description": "Countries and capitals."}))
    proposal = ("Task: Name the capital city of the country.\nInput fields: country\nOutput field: capital\n\n"
                "Task: Give the capital.\nInput fields: country\nOutput field: population\n\n"      # no such field
                "Task: Repeat the capital.\nInput fields: capital\nOutput field: capital\n\n"       # output is an input
                "Task: Name the capital city of this country.\nInput fields: country\nOutput field: capital\n"  # near-duplicate
                "Task: Which continent is the country in?\nInput fields: country\nOutput field: continent")
    model = cached(ScriptedModel(rules={"Dataset name: capitals": [proposal, "no tasks here"]}))
    res = dynosaur.run(dynosaur.DynosaurConfig(data=[str(data)], samples=2, instances_per_task=10), model, log=lambda s: None)
    verdicts = [t["verdict"] for t in res.tasks]
    assert verdicts == ["kept", "unknown_output_field", "output_in_inputs", "duplicate_instruction", "kept", "unparsed"]
    capital = [r for r in res.rows if r["meta"]["output"] == "capital"]
    # every row with both values becomes an instance; Chile has no capital, so it is skipped
    assert sorted(r["completion"][0]["content"] for r in capital) == ["Lima", "Nairobi", "Tokyo"]
    assert all(r["prompt"][0]["content"].startswith("Name the capital city of the country.\n\ncountry: ") for r in capital)
    assert len([r for r in res.rows if r["meta"]["output"] == "continent"]) == 4
    prompt = model.backend.calls[0].prompt[0].content  # the metadata the proposer read
    assert "Dataset name: capitals" in prompt and "Countries and capitals." in prompt and "- country (example: 'Peru')" in prompt
    with pytest.raises(Exception, match="not bundled-qa, bundled-code or a JSONL file"):
        dynosaur.run(dynosaur.DynosaurConfig(data=[str(tmp_path / "nope.jsonl")]), model)


def test_dynosaur_metadata_of_the_bundled_sets():
    from selfalign.synth import dynosaur

    qa, code = dynosaur.load_dataset("bundled-qa"), dynosaur.load_dataset("bundled-code")
    assert {"question", "answers", "entity", "relation"} <= set(qa.fields)
    assert {"prompt", "canonical_solution", "entry_point"} <= set(code.fields)
    text = dynosaur.metadata_prompt(qa, 3)
    assert "Propose 3 different tasks" in text and "- answers (example:" in text


# ----------------------------------------------------------------- LaMini topic-guided
def test_lamini_asks_about_sampled_topics_filters_and_answers(tmp_path):
    from selfalign.synth import lamini

    topics = tmp_path / "topics.txt"
    topics.write_text("# mine\nvolcanoes\ntea\nchess\n")
    listing = (" Explain how a volcano forms from magma below the crust.\n2. Tea.\n"
               "3. Explain how a volcano forms from magma under the crust.\n4. Describe the rules of castling in chess.")
    gen = cached(ScriptedModel(rules={"related to the following topics": listing}))
    teacher = cached(ScriptedModel(rules={"castling": "The king moves two squares toward a rook."}, default="",
                                   model_id="teacher"))
    cfg = lamini.LaMiniConfig(topics=str(topics), requests=2, per_request=4, topics_per_request=2)
    res = lamini.run(cfg, gen, teacher, log=lambda s: None)
    prompt = gen.backend.calls[0].prompt
    assert "related to the following topics:" in prompt and sum(t in prompt for t in ("volcanoes", "tea", "chess")) == 2
    # one row: the volcano instruction is kept once, its near-copy and the second request's copies are duplicates,
    # "Tea." is too short, and the teacher gives the volcano instruction an empty answer
    assert [r["prompt"][0]["content"] for r in res.rows] == ["Describe the rules of castling in chess."]
    assert res.rows[0]["completion"][0]["content"] == "The king moves two squares toward a rook."
    assert res.stats.filtered == {"too_short": 2, "duplicate": 4, "empty_response": 1}
    assert res.rows[0]["meta"]["method"] == "lamini-topic" and len(res.rows[0]["meta"]["topics"]) == 2
    with pytest.raises(Exception, match="not a file"):
        lamini.run(lamini.LaMiniConfig(topics=str(tmp_path / "none.txt")), gen)


# ----------------------------------------------------------------- Unnatural Instructions
def test_unnatural_instructions_core_outputs_and_rephrasing():
    from selfalign.synth import unnatural

    core = ["Instruction: Name the colour of the object.\nInput: a ripe banana\nConstraints: One word.\nExample 5",
            "no example here",
            "Instruction: Name the colour of the object.\nInput: a ripe banana\nConstraints: One word.",  # duplicate
            "Instruction: Count the vowels.\nInput: None.\nConstraints: None."]

    def reply(prompt, i, seed):
        if "Rewrite the instruction" in prompt:
            return "What colour is {INPUT}?" if "colour" in prompt.split("Instruction:")[-1] else "Count the vowels."
        if "Example 4" in prompt:
            return core[seed % 4]
        if "banana" in prompt:
            return "Yellow"
        return ""

    model = cached(ScriptedModel(default=reply))
    res = unnatural.run(unnatural.UnnaturalConfig(requests=4), model, log=lambda s: None)
    first = model.backend.calls[0].prompt
    assert first.count("Instruction:") == 3 and first.rstrip().endswith("Example 4")  # three seeds, no pool
    assert res.stats.filtered == {"unparsed": 1, "duplicate": 1, "empty_output": 1}
    assert res.core == 1 and res.rephrased == 1
    c, r = res.rows
    assert c["prompt"][0]["content"] == "Name the colour of the object.\n\nInput: a ripe banana\nConstraints: One word."
    assert c["completion"][0]["content"] == r["completion"][0]["content"] == "Yellow"
    assert r["prompt"][0]["content"] == "What colour is a ripe banana?\nConstraints: One word."
    assert r["meta"] == {"method": "unnatural-rephrased", "ok": True, "parent": 0, "constraints": "One word."}
    no_expansion = unnatural.run(unnatural.UnnaturalConfig(requests=4, rephrase=False), model, log=lambda s: None)
    assert [x["meta"]["method"] for x in no_expansion.rows] == ["unnatural-core"]


# ----------------------------------------------------------------- LongForm, DoG-Instruct
LONG_TEXTS = ["Peru is a country in South America. Its capital is Lima and its currency is the Sol.",
              "Too short here.",
              "Iron is a chemical element with the symbol Fe and atomic number 26; it rusts in water.",
              "Kenya is a country in Africa. Its capital is Nairobi, a large city near the equator."]


def _corpus(tmp_path, texts):
    p = tmp_path / "c.txt"
    p.write_text("\n\n".join(texts))
    return str(p)


def test_longform_keeps_the_document_as_the_output(tmp_path):
    from selfalign.synth import longform

    def reply(prompt, i, seed):
        if "Peru" in prompt:
            return "Instruction: Tell me about Peru's capital and money."
        if "Iron" in prompt:  # copies the document
            return "Iron is a chemical element with the symbol Fe and atomic number 26"
        return ""

    model = cached(ScriptedModel(default=reply))
    res = longform.run(longform.LongFormConfig(corpus=_corpus(tmp_path, LONG_TEXTS), min_words=6), model, log=lambda s: None)
    assert [(r["prompt"][0]["content"], r["completion"][0]["content"]) for r in res.rows] == [
        ("Tell me about Peru's capital and money.", LONG_TEXTS[0])]
    assert res.stats.filtered == {"too_short": 1, "copies_document": 1, "empty": 1}
    styles = {c.prompt[0].content.split("\n")[0] for c in model.backend.calls}
    assert styles <= set(longform.STYLES.values()) and len(styles) >= 2  # the styles vary by text


def test_dog_instruct_wraps_into_a_grounded_dialogue(tmp_path):
    from selfalign.synth import dog_instruct

    def reply(prompt, i, seed):
        if "Peru" in prompt:
            return "User: What is the capital of Peru, and its money?\nAssistant: Lima is its capital; it uses the Sol.\nUser: ok"
        if "Kenya" in prompt:  # invents its answer
            return "User: Tell me about Kenya.\nAssistant: Kenya has famous marathon runners and tea farms."
        return "Here is a conversation about iron."

    model = cached(ScriptedModel(default=reply))
    res = dog_instruct.run(dog_instruct.DogConfig(corpus=_corpus(tmp_path, LONG_TEXTS)), model, log=lambda s: None)
    assert [(r["prompt"][0]["content"], r["completion"][0]["content"]) for r in res.rows] == [
        ("What is the capital of Peru, and its money?", "Lima is its capital; it uses the Sol.")]
    assert res.stats.filtered == {"not_grounded": 1, "unparsed": 2}
    assert res.rows[0]["meta"]["grounding"] == 0.75 and "Lima" not in res.rows[0]["prompt"][0]["content"]


# ----------------------------------------------------------------- LLMs-as-Instructors
def test_instructors_analyse_each_error_then_target_it(tmp_path):
    from selfalign.synth import instructors

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "question": "What is the capital of Peru?", "answers": ["Lima"], "relation": "capital", "split": "train"},
        {"id": "b", "question": "What is the capital of Kenya?", "answers": ["Nairobi"], "relation": "capital", "split": "train"},
        {"id": "c", "question": "What is the symbol of iron?", "answers": ["Fe"], "relation": "symbol", "split": "train"},
        {"id": "t", "question": "What is the capital of Chile?", "answers": ["Santiago"], "split": "test"}]))
    student = cached(ScriptedModel(rules={"capital of Peru?": "Lima.", "capital of Kenya?": "Mombasa.",
                                          "symbol of iron?": "Ir."}, model_id="student"))

    def teach(prompt, i, seed):
        if "explain what knowledge" in prompt:
            return "" if "iron" in prompt else "The student confuses Kenya's largest port with its capital."
        return ("Question: What is the capital of Tanzania?\nAnswer: Dodoma\n"
                "Question: What is the capital of Kenya?\nAnswer: Nairobi")

    teacher = cached(ScriptedModel(default=teach, model_id="teacher"))
    res = instructors.run(instructors.InstructorsConfig(data=str(qa), strategy="contrast"), student, teacher,
                          log=lambda s: None)
    assert res.failures == 2 and res.student_accuracy == 1 / 3
    analysis_prompts = [c.prompt[0].content for c in teacher.backend.calls if "explain what knowledge" in c.prompt[0].content]
    kenya = next(p for p in analysis_prompts if "Kenya" in p)
    assert "Student's answer: Mombasa." in kenya and "similar question correctly:\nQuestion: What is the capital of Peru?" in kenya
    synth = [c.prompt[0].content for c in teacher.backend.calls if c.prompt[0].content.startswith("Analysis of")]
    assert synth == ["Analysis of a student's mistake:\nThe student confuses Kenya's largest port with its capital.\n\n"
                     + instructors.SYNTHESIS_TEMPLATE.split("\n\n", 1)[1].format(k=2)]
    assert [r["prompt"][0]["content"] for r in res.rows] == ["What is the capital of Tanzania?"]
    assert res.stats.filtered == {"no_analysis": 1, "copies_failure": 1}
    assert res.rows[0]["meta"]["seed_id"] == "b" and "port" in res.rows[0]["meta"]["analysis"]


# ----------------------------------------------------------------- Selective Reflection-Tuning
class _Student:
    """Scores by rule: an answer after an instruction that says HARD is harder to predict (IFD up);
    an instruction is easier to infer from a response that says GOOD (r-IFD down)."""

    model_id = "student"

    def score(self, reqs):
        from selfalign.types import ScoreResult

        out = []
        for r in reqs:
            ctx = " ".join(m.content for m in r.prompt) if r.prompt else ""
            loss = 1.0 if not ctx else (0.3 if "GOOD" in ctx else 0.8) if "Here is a response" in ctx \
                else (0.9 if "HARD" in ctx else 0.5)
            out.append(ScoreResult(r, (-loss, -loss)))
        return out


def test_selective_reflection_keeps_what_the_student_scores_better(tmp_path):
    from selfalign.synth import reflection

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": q}],
                                        "completion": [{"role": "assistant", "content": a}]}) + "\n"
                            for q, a in [("Name a fruit.", "Apple."), ("Name a metal.", "Iron."), ("Say hi.", "Hi.")]))

    def teach(prompt, i, seed):
        if "Improve the instruction" in prompt:
            if "fruit" in prompt:
                return "Instruction: Name a HARD tropical fruit.\nResponse: Mango."
            if "metal" in prompt:
                return "Instruction: Name a metal, please.\nResponse: Copper."
            return "I cannot."
        if "fruit" in prompt:
            return "Mango, a GOOD tropical fruit."
        return "" if "hi" in prompt.lower() else "Iron is a metal."

    res = reflection.run(reflection.ReflectionConfig(input=str(data)), _Student(), cached(ScriptedModel(default=teach)),
                         log=lambda s: None)
    got = [(r["prompt"][0]["content"], r["completion"][0]["content"]) for r in res.rows]
    # fruit: harder instruction accepted (IFD 0.9 > 0.5), better-fitting response accepted (r-IFD 0.3 < 0.8);
    # metal: rewrite not harder for the student, kept as it was, response rewrite not better; hi: nothing parsed
    assert got == [("Name a HARD tropical fruit.", "Mango, a GOOD tropical fruit."), ("Name a metal.", "Iron."),
                   ("Say hi.", "Hi.")]
    assert res.counts == {"instruction_accepted": 1, "instruction_rejected": 1, "instruction_unparsed": 1,
                          "response_accepted": 1, "response_rejected": 1, "response_empty": 1}
    assert res.rows[0]["meta"]["ifd_before"] == 0.5 and res.rows[0]["meta"]["ifd"] == 0.9
    assert [r["meta"]["source"] for r in res.rows] == [0, 1, 2]  # each row names the input row it recycles


# ----------------------------------------------------------------- Auto Evol-Instruct
def test_auto_evol_replaces_the_method_only_when_the_dev_failure_rate_falls():
    from selfalign.synth import auto_evol

    def evol(prompt, i, seed):
        if prompt.startswith("user: Here is a method"):  # the optimizer: one useless and one fixing candidate
            return "Make it harder. Never write the words rewritten prompt." if seed % 2 else "Just copy it: #Rewritten Prompt#"
        if "#Rewritten Instruction#" in prompt:
            if "Never write the words" in prompt:
                return "Explain, in three steps, " + prompt.split("#Instruction#:\n")[1].split("\n")[0]
            return "#Rewritten Prompt#: same thing"
        return "Here is a detailed answer with several useful points."

    model = cached(ScriptedModel(default=evol))
    cfg = auto_evol.AutoEvolConfig(steps=2, batch=3, dev=3, candidates=2, n_final=4)
    res = auto_evol.run(cfg, model, log=lambda s: None)
    # step 1: every rewrite of the initial method copies prompt words; of the two candidates only the one that
    # avoids them lowers the dev failure rate (100% -> 0%), so it replaces the method; step 2 has no failure
    h1, h2 = res.history
    assert h1["dev_failure_rate"] == 1.0 and h1["batch_failures"] == 3
    assert sorted(c["dev_failure_rate"] for c in h1["candidates"]) == [0.0, 1.0] and h1["accepted"] is not None
    assert "Never write the words" in res.methods[res.best] and h2["batch_failures"] == 0 and h2["accepted"] is None
    assert len(res.rows) == 4 and all(r["prompt"][0]["content"].startswith("Explain, in three steps") for r in res.rows)
    assert all(r["meta"]["evolving_method"] == res.best for r in res.rows)


# ----------------------------------------------------------------- AutoDetect
def test_autodetect_grows_the_tree_only_where_the_student_is_weak():
    from selfalign.synth import autodetect

    def examiner(prompt, i, seed):
        if "List 2 distinct knowledge points" in prompt:
            return "1. Geometry\n2. Capitals"
        if "weak at this knowledge point: Geometry" in prompt:
            return "- Angles of triangles\n- Area of circles"
        if "weak at this knowledge point" in prompt:
            return "- Something deeper"
        if "knowledge point:" in prompt:
            topic = prompt.split("knowledge point: ")[1].split(".")[0]
            return f"Question A about {topic}?\nQuestion B about {topic}?"
        return "A reference answer."

    def assessor(prompt, i, seed):
        if "Capitals" in prompt:
            return "Correct. Score: 9"
        if "Angles" in prompt:
            return "Correct now. Score: 8"
        if "Area of circles" in prompt and "Question B" in prompt:
            return "I cannot tell."  # unscored, never read as low
        return "Wrong. Score: 2"

    student = cached(ScriptedModel(default="I think it is 7.", model_id="student"))
    res = autodetect.run(autodetect.AutoDetectConfig(root_points=2, children=2, depth=3, questions_per_point=2),
                         student, cached(ScriptedModel(default=examiner, model_id="ex")),
                         cached(ScriptedModel(default=assessor, model_id="as")), log=lambda s: None)
    tree = {n["point"]: n for n in res.tree}
    assert set(tree) == {"Geometry", "Capitals", "Angles of triangles", "Area of circles", "Something deeper"}
    assert tree["Geometry"]["weak"] and not tree["Capitals"]["weak"] and tree["Capitals"]["mean_score"] == 9
    assert tree["Angles of triangles"]["parent"] == tree["Geometry"]["id"] and not tree["Angles of triangles"]["weak"]
    # Area of circles: one score of 2, one unscored -> mean 2 over the scored one, weak, grown to depth 3
    assert tree["Area of circles"]["mean_score"] == 2 and tree["Something deeper"]["depth"] == 3
    assert res.stats.filtered["unscored"] == 1
    assert res.weaknesses == ["Geometry", "Geometry > Area of circles", "Geometry > Area of circles > Something deeper"]
    assert len(res.rows) == 2 + 1 + 2 and all(r["completion"][0]["content"] == "A reference answer." for r in res.rows)
    assert res.rows[0]["meta"]["path"] == ["Geometry"] and res.rows[0]["meta"]["student_score"] == 2
