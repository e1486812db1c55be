"""The simulator's command line: language mixes, service times, and how sessions share pairs."""

import random

import pytest

from fleetsim.browser import LanguagePair, job_label
from fleetsim.options import OptionError, Plan, parse_languages, parse_spread


def test_a_language_list_and_a_weighted_mix():
    assert parse_languages("zh,en,ja") == (["zh", "en", "ja"], None)
    languages, mix = parse_languages("zh-en:20,en-de:5,th-vi")
    assert languages == ["zh", "en", "de", "th", "vi"]
    assert mix == [(LanguagePair("zh", "en"), 20.0), (LanguagePair("en", "de"), 5.0), (LanguagePair("th", "vi"), 1.0)]


@pytest.mark.parametrize("text", ["zh", "zh-zh", "zh-en:0", "zh-en:x", "zh-en,de", "z1,en", ""])
def test_languages_that_make_no_session_are_refused(text):
    with pytest.raises(OptionError, match="--languages"):
        parse_languages(text)


@pytest.mark.parametrize(("text", "spread"), [
    ("800±300", (500, 1100)), ("800+-300", (500, 1100)), ("800", (800, 800)), ("500-1100", (500, 1100)),
])
def test_a_service_time_is_a_range(text, spread):
    assert parse_spread(text) == spread


@pytest.mark.parametrize("text", ["800±900", "fast", "1100-500"])
def test_a_service_time_below_zero_or_unreadable_is_refused(text):
    with pytest.raises(OptionError, match="--service-ms"):
        parse_spread(text)


def test_sessions_share_the_pairs_by_weight_and_the_two_way_share_is_exact():
    zh_en, en_de = LanguagePair("zh", "en"), LanguagePair("en", "de")
    plan = Plan(url="ws://x", sessions=10, pairs=[(zh_en, 20.0), (en_de, 5.0)], two_way=0.3)
    pairs = plan.session_pairs(random.Random(1))
    assert sorted((p.src, p.tgt) for p in pairs).count(("zh", "en")) == 8
    assert sum(p.two_way for p in pairs) == 3
    assert {p.label for p in pairs} <= {"zh-en", "en-de", "en~zh", "de~en"}


def test_a_job_is_labelled_as_its_session():
    assert job_label({"src_lang": "zh", "tgt_lang": "en", "mode": "one_way"}) == LanguagePair("zh", "en").label
    two_way = {"src_lang": "auto", "tgt_lang": "en", "mode": "two_way_auto", "lang_a": "zh", "lang_b": "en"}
    assert job_label(two_way) == LanguagePair("zh", "en", two_way=True).label == "en~zh"
