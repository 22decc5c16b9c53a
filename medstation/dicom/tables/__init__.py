"""The study database's tables, by subject, each on the database's one connection.

- ``index``: what the files hold (patients, studies, series, instances, problems, imported folders);
  rebuildable by re-importing the folders.
- ``annotations``: what readers made on a series (measurements, reviews of AI findings, labels).
- ``ai_cache``: findings cached per series and model version (the reviews merged in on reading).
- ``followup``: what follow-up keeps between runs (registrations, patient links, track edits).

Each subject declares its own tables (``SCHEMA``); ``dicom.database`` assembles them into one
schema with one version and one list of migrations, and opens the one connection they share.
"""
