"""What a reproduction declares about its training-curve figures, as data in its spec.toml:
which monitored curve columns get a figure, which learners' evaluation losses are drawn across
each trained learner's panels (the paper's comparisons), the learner whose loss marks the
plateau a failed training stays on, and analysis results drawn as lines too.

The core draws whatever a reproduction declares here and knows no learner, monitor or paper.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CurvePlot(BaseModel):
    """A figure per suite of one curve column: one panel per trained learner, each on its own
    training budget, so a 5000-step model is not squeezed beside a 50 000-step one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stem: str = Field(description="file name stem: <suite>-<stem>.png")
    ylabel: str
    log: bool = False
    label: str | None = Field(None, description="the column's legend name (default: the column's name)")
    second: str | None = Field(None, description="another column, drawn dashed in the same panels")
    second_label: str | None = Field(None, description="the second column's legend name (default: its name)")
    references: bool = Field(False, description="draw the compared learners' evaluation losses across each panel")
    top: float | None = Field(None, description="a shared upper limit (a cosine's 1), so panels compare at a glance")


class AnalysisLine(BaseModel):
    """A horizontal line from an analysis: the mean over seeds of `result[key]` of analysis
    `analysis` run on this learner and suite (e.g. the interpolated model's loss)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    analysis: str
    key: str
    name: str = Field(description="the line's legend name")


class CurveFigures(BaseModel):
    """The `[curves]` table of a reproduction's spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    plots: dict[str, CurvePlot] = Field(default_factory=dict, description="curve column -> its figure")
    references: dict[str, list[str]] = Field(
        default_factory=dict, description="trained learner spec -> learners whose evaluation loss is drawn across its panels")
    baseline: str | None = Field(None, description="the learner whose loss marks a failed training's plateau")
    baseline_label: str | None = Field(None, description="the baseline's legend name (default: its spec)")
    analysis_lines: list[AnalysisLine] = Field(default_factory=list)

    @property
    def baseline_line(self) -> str | None:
        """The baseline's legend name."""
        return self.baseline_label or self.baseline
