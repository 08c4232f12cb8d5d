"""Human rating of LPM-Bench: pairwise Good / Same / Bad preference and 1-5 ratings per dimension.

- :mod:`.study`      the study file (pairs of system A / B videos, dimensions); ``make_study`` from two folders
- :mod:`.forms`      validation of what a rater submits
- :mod:`.store`      studies, pairs, shown order, votes and scores in the catalog
- :mod:`.server`     the local web app (``lpm rate serve``); :mod:`.page` its HTML, :mod:`.media` video bytes
- :mod:`.aggregate`  per-pair majority, win rate and mean ratings with 95% intervals (``lpm rate report``)
"""
