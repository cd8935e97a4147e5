"""What kdtool shows of runs: ``compare`` tables (:mod:`.compare`), figures in one shared style (:mod:`.plots`),
Q heatmaps and Q against a confusion matrix (:mod:`.qreport`), the HTML report (:mod:`.htmlreport`) and the
console display (:mod:`.display`)."""
