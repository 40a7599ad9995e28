"""What the viewer's variant picker reads: experiments/{exp}/variants/viewer.json (docs/formats.md).

{"reference": the vector variant, "pairs": [{"variant", "responses_from", "model", "root", "source_root"}],
 "overviews": {"VARIANT|SOURCE": an overview like viewer/overview.json}, "responses": {SOURCE: [text per prompt]}}
root: the pair's folder relative to the experiment ("" for the vector variant's own), source_root: the
source's own folder (where its responses are). The vector variant's own overview is viewer/overview.json.
"""

import os


def variants_viewer(pairs, reference, experiment, prompt_refs, prompt_meta, out):
    from ..core.fileio import load_pt, save_json
    from ..outputs.overview import overview_from_files

    overviews, responses = {}, {}
    for pair in pairs:
        files = pair["files"]
        traits = list(files)
        prompts = list(range(len(next(iter(files.values()), []))))
        if (pair["variant"], pair["responses_from"]) != (reference, reference):
            captures = {t: {g: path for g, path in enumerate(files[t])} for t in traits}
            overviews[f"{pair['variant']}|{pair['responses_from']}"] = overview_from_files(
                captures, traits, prompts, experiment, prompt_refs=prompt_refs, prompt_meta=prompt_meta)
        if pair["variant"] == pair["responses_from"] and traits:
            responses[pair["variant"]] = [load_pt(path)["response"]["text"] for path in files[traits[0]]]
    listed = [{k: pair[k] for k in ("variant", "responses_from", "model", "root", "source_root")} for pair in pairs]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    save_json({"reference": reference, "pairs": listed, "overviews": overviews, "responses": responses}, out)
