"""The local backend: search, image search and browse over a folder, no network."""

from __future__ import annotations

import json

import pytest

from gensearcher.errors import UserError
from gensearcher.testing.documents import minimal_pdf
from gensearcher.tools import BrowseArgs, ImageSearchArgs, SearchArgs, Toolbox
from gensearcher.tools.browse import BrowseTool
from gensearcher.tools.local import INDEX_NAME, LocalCorpus, build_index
from gensearcher.tools.search import ImageSearchTool, SearchTool
from gensearcher.web import Web
from tests.conftest import make_image


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "corpus"
    (root / "pages").mkdir(parents=True)
    (root / "pages" / "tour.md").write_text("# Tour de France 2026\n\nThe yellow jersey went to the winner in Paris.\n")
    (root / "pages" / "trophy.html").write_text(
        "<html><head><title>The trophy</title><script>var x='jersey';</script></head><body>"
        "<h1>Trophy</h1><p>A silver cup with engraved text.</p><img src='../img/cup.png' alt='silver cup'></body></html>")
    (root / "notes.txt").write_text("Unrelated notes about gardening. " * 2000)
    (root / "report.pdf").write_bytes(minimal_pdf("The velodrome roof is made of larch wood."))
    make_image(root / "img" / "cup.png")
    make_image(root / "img" / "yellow_jersey.jpg", color=(250, 220, 0))
    make_image(root / "img" / "IMG_4411.png", color=(0, 90, 200))
    (root / "captions.json").write_text(json.dumps({"img/IMG_4411.png": "Team photo on the podium in Paris"}))
    return root


@pytest.fixture(params=["memory", "file"])
def corpus(request, root):
    if request.param == "file":
        build_index(root)
        assert (root / INDEX_NAME).is_file()
    return LocalCorpus(root)


async def test_search_ranks_documents_and_links_them(corpus):
    result = await SearchTool(corpus)(SearchArgs(queries=["yellow jersey winner", "nothing-matches-this"]))
    assert "--- search result for [yellow jersey winner] ---" in result.text
    assert "[Tour de France 2026](file://" in result.text
    assert "No results for 'nothing-matches-this'." in result.text
    assert "var x" not in (await SearchTool(corpus)(SearchArgs(queries=["jersey"]))).text  # scripts are not text
    assert "larch" in (await SearchTool(corpus)(SearchArgs(queries=["velodrome roof"]))).text  # PDF text


async def test_image_search_uses_names_captions_and_alt_text(corpus, tmp_path):
    tool = ImageSearchTool(corpus, Web(None, None), image_dir=tmp_path / "store")
    by_name = await tool(ImageSearchArgs(query="yellow jersey"))
    assert by_name.images[0].url.endswith("yellow_jersey.jpg") and len(by_name.images[0].sha256) == 64
    assert by_name.images[0].local_path.startswith(str(tmp_path / "store"))
    by_caption = await tool(ImageSearchArgs(query="podium"))
    assert by_caption.images[0].title == "Team photo on the podium in Paris"
    by_alt = await tool(ImageSearchArgs(query="silver cup"))
    assert by_alt.images[0].url.endswith("cup.png")
    empty = await tool(ImageSearchArgs(query="volcano"))
    assert empty.images == [] and "No images found" in empty.text


async def test_browse_reads_bounded_text_inside_the_corpus_only(corpus, root, tmp_path):
    browse = BrowseTool(Web(None, None), summariser=None, max_chars=500, corpus=corpus)
    page = await browse(BrowseArgs(url=(root / "pages" / "trophy.html").as_uri(), query="engraving"))
    assert "A silver cup" in page.text and "not summarised (no summariser is configured)" in page.text
    long = await browse(BrowseArgs(url="notes.txt", query="x"))
    assert "500 of 65999 characters shown" in long.text and len(long.text) < 800
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    toolbox = Toolbox({"browse": browse})
    for url in (outside.as_uri(), "../secret.txt", str(root / "img" / "cup.png"), "ftp://example.org/x"):
        outcome = await toolbox.call("browse", {"url": url, "query": "q"})
        assert outcome.result.error, url


def test_missing_corpus_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        LocalCorpus(tmp_path / "nope")
