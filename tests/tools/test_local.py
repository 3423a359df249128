"""The local backend: search, image search and browse over a folder, no network."""

from __future__ import annotations

import json

import pytest

from gensearcher.errors import UserError
from gensearcher.tools import BrowseArgs, ImageSearchArgs, SearchArgs, Toolbox
from gensearcher.tools.local import LocalCorpus
from tests.conftest import make_image


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "pages").mkdir(parents=True)
    (root / "pages" / "tour.md").write_text("# Tour de France 2026\n\nThe yellow jersey went to the winner in Paris.\n")
    (root / "pages" / "trophy.html").write_text(
        "<html><head><title>The trophy</title><script>var x='jersey';</script></head><body>"
        "<h1>Trophy</h1><p>A silver cup with engraved text.</p><img src='../img/cup.png' alt='silver cup'></body></html>")
    (root / "notes.txt").write_text("Unrelated notes about gardening. " * 2000)
    make_image(root / "img" / "cup.png")
    make_image(root / "img" / "yellow_jersey.jpg")
    make_image(root / "img" / "IMG_4411.png")
    (root / "captions.json").write_text(json.dumps({"img/IMG_4411.png": "Team photo on the podium in Paris"}))
    return LocalCorpus(root, max_browse_chars=500)


async def test_search_ranks_documents_and_links_them(corpus):
    result = await corpus.search(SearchArgs(queries=["yellow jersey winner", "nothing-matches-this"]))
    assert "--- search result for [yellow jersey winner] ---" in result.text
    assert "[Tour de France 2026](file://" in result.text
    assert "No results for 'nothing-matches-this'." in result.text
    assert "var x" not in (await corpus.search(SearchArgs(queries=["jersey"]))).text  # scripts are not text


async def test_image_search_uses_names_captions_and_alt_text(corpus):
    by_name = await corpus.image_search(ImageSearchArgs(query="yellow jersey"))
    assert by_name.images[0].local_path.endswith("yellow_jersey.jpg") and len(by_name.images[0].sha256) == 64
    by_caption = await corpus.image_search(ImageSearchArgs(query="podium"))
    assert by_caption.images[0].title == "Team photo on the podium in Paris"
    by_alt = await corpus.image_search(ImageSearchArgs(query="silver cup"))
    assert by_alt.images[0].local_path.endswith("cup.png")
    empty = await corpus.image_search(ImageSearchArgs(query="volcano"))
    assert empty.images == [] and "No images found" in empty.text


async def test_browse_reads_bounded_text_inside_the_corpus_only(corpus, tmp_path):
    page = await corpus.browse(BrowseArgs(url=(corpus.root / "pages" / "trophy.html").as_uri(), query="engraving"))
    assert page.text.startswith("Page: The trophy") and "A silver cup" in page.text
    long = await corpus.browse(BrowseArgs(url="notes.txt", query="x"))
    assert "[truncated: the page has" in long.text and len(long.text) < 700
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    toolbox = Toolbox({"browse": corpus.browse})
    for url in (outside.as_uri(), "../secret.txt", "https://example.org/", str(corpus.root / "img" / "cup.png")):
        outcome = await toolbox.call("browse", {"url": url, "query": "q"})
        assert outcome.result.error and "no page" in outcome.result.error and "secret" not in outcome.result.text[:0]


def test_missing_corpus_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        LocalCorpus(tmp_path / "nope")
