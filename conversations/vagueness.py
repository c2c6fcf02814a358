"""Does a feedback statement say something concrete? Rules for zh-CN, en and the two mixed.

``assess(text)`` returns ``Verdict(specific, reasons)``. A statement is *specific* when, after its stock
phrases are set aside, it still names something concrete: a number, a date, a ticket, a name (a
product, system, customer, person, quoted title or code identifier), a piece of work (a migration, a
release, an incident, a named customer, 上线, 故障, 某银行客户), an example (for example, when
she..., 比如, 在…时) or an outcome (cut, shipped, fixed, 降低, 修复). One of those is enough. Weak
hints never are, alone or together: a period without a date ("this quarter", "last sprint", 本周,
上个月), a bare year, length. "Good job last week" is vague, and so is a long string of praise.

Otherwise the statement is *vague*: generic praise, criticism or exhortation ("还不错", "继续努力",
"表现良好", "good job", "keep it up", "nice work") or a trait that could be said of anyone.

``reasons`` names what decided: the signals found, in the order above (``("number", "outcome")``), or,
for a vague statement, the stock phrases found (``("vague_phrase:还不错",)``) or ``("no_concrete_content",)``,
then the weak hints seen (``"weak:relative_date"``, ``"weak:year"``, ``"weak:long"``: "you said when,
now say what"). The nudge shows them; the tests check them.

For measuring (``benchmarks/vagueness.py``) the positive class is *vague*, the statements flagged:
precision = flagged statements that are vague / all flagged, recall = vague statements flagged / all
vague statements.

Chinese has no spaces, so Chinese rules are character patterns; no tokenizer, no model.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """``specific``: the statement names something concrete; ``reasons``: which signals decided it."""

    specific: bool
    reasons: tuple[str, ...] = ()


def _words(alternatives: str) -> re.Pattern[str]:
    """English alternatives (``a|b|c``, regex allowed) as whole words, any case."""
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE | re.ASCII)


def _chars(alternatives: str) -> re.Pattern[str]:
    """Chinese alternatives (``a|b|c``) as plain character patterns: Chinese has no word boundaries."""
    return re.compile(alternatives)


# re.ASCII throughout: Python counts Chinese characters as word characters, so without it no \b (and no
# (?<!\w)) would fire between 把 and PAY-812 or between 个 and sprint.

# Stock phrases: generic praise, criticism and exhortation. They are reported, then blanked out, so
# that "Keep it up" does not count as a capitalised name and "新的一年" not as a duration.
VAGUE_EN = _words(
    "good job|great job|awesome job|nice job|nice work|great work|good work|keeps? (?:it|this|that) up"
    "|keep up the (?:good|great) work|keep going|well done|good progress|great effort|hard work"
    "|doing (?:great|well)|excellent attitude|team player|great teammate|solid performer|high-quality work"
    "|(?:a )?pleasure to (?:work|collaborate) with|easy to work with|happy to help|exceeded expectations"
    "|as usual|across the board|in every aspect|needs? to improve|room for improvement|(?:be )?more proactive"
    "|take more ownership|step up|communicate better|could be better|not bad|on track|all good"
    "|no major issues|going well|as expected|nothing notable|raise the bar"
)
VAGUE_ZH = _chars(
    "还不错|不错|继续努力|继续保持|保持就好|再接再厉|表现良好|表现优秀|很棒|辛苦了|辛苦大家了|加油|有待提高"
    "|有待提升|需要更主动|更主动|做得很好|做得更好|干得漂亮|挺好|很好|优秀|出色|靠谱|还行|还可以|点赞"
    "|符合预期|超出预期|认真负责|态度积极|能力强|能力很强|有责任心|责任心|上进心|进步很大|乐于助人"
    "|合作愉快|合作很愉快|需要改进|需要提高|还需加强|需要加强|不够积极|提升空间|不足之处|一切正常"
    "|没有什么大问题|进度正常|各方面|新的一年|更上一层楼|一如既往|有目共睹|大局观|执行力|影响力"
    "|主人翁意识|稳定发挥"
)

# Hyperbole and slang are not measurements: "110%", "10/10", "100分", "满分", "666".
HYPERBOLE = re.compile(r"\b1[0-9]0\s?%|\b10\s?/\s?10\b|\b100\s?分|满分|(?<!\d)666+(?!\d)", re.ASCII)

# Strong signals: any one makes a statement specific ------------------------------------------------
NUMBER = re.compile(
    r"\d"  # any digit left once tickets, dates, years and hyperbole are taken out
    r"|[一二两三四五六七八九十百千万半]+(?:个(?!目标)|小时|[天周月年次遍倍条份名人批行家位项轮场张台期页分钟秒])"
    r"|(?<![\w-])(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|dozens?|hundreds?)"
    r" (?:of )?[a-z]+"  # two offers, three weekends, two of my tickets
    r"|(?<![\w-])(?:one|a|an|half an?) (?:minutes?|hours?|days?|weeks?|weekends?|months?)(?![\w-])"
    r"|(?<![\w-])(?:twice|zero)(?![\w-])",
    re.IGNORECASE | re.ASCII,
)
_ZH_ONE_ARTICLE = re.compile("一个|一些|一下|一点|一起|一切")  # 一 as an article, not a count

DATE = re.compile(
    r"(?<![\w-])(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekend|january|february"
    r"|march|april|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug"
    r"|sept?|oct|nov|dec|may \d{1,2})(?:'s)?(?![\w-])"
    r"|\bthe \d{1,2}(?:st|nd|rd|th)\b|\b[QH][1-4]\b|\bFY\d{2,4}\b"
    r"|\d{1,2}\s?月|\d{1,2}\s?[日号]|[周星期礼拜][一二三四五六日天末]|春节|国庆|元旦|中秋|双十一|双11|618",
    re.IGNORECASE | re.ASCII,
)

TICKET = re.compile(r"\b[A-Z][A-Z0-9]{1,9}-\d+\b|(?<![\w&])#\d+\b", re.ASCII)

# Names: a quoted title, a code identifier, an acronym, a capitalised word inside a sentence.
QUOTED = re.compile(
    r"「[^」]+」|《[^》]+》|“[^”]*\w[^”]*”|\"[^\"]*\w[^\"]*\"|(?<!\w)'[^']*\w[^']*'(?!\w)|`[^`]+`"
)
IDENTIFIER = re.compile(
    r"\b[a-z]+_[a-z_]+\b|\b[a-z]+[A-Z]\w*\b|\b[A-Za-z]+\d\w*\b|\bv\d+(?:\.\d+)*\b|(?<!\w)#[a-z][\w-]+",
    re.ASCII,
)
ACRONYM = re.compile(r"\b[A-Z][A-Z0-9]{1,5}s?\b", re.ASCII)
CAPITALISED = re.compile(r"\b[A-Z][a-z]+\b", re.ASCII)
_SENTENCE_END = re.compile(r"(?:^|[.!?;:。！？；：—–\-,，、(（])\s*$")

WORK_EN = _words(
    "migrat(?:ion|ions|ed|ing)|releases?|incidents?|outages?|postmortems?|PRs?|pull requests?|code review"
    "|(?:customer|client) (?=(?-i:[A-Z]))|deploy(?:s|ed|ment)?|rollouts?|launch(?:es|ed)?|bugs?|tickets?"
    "|demos?|runbooks?|dashboards?|pipelines?|scripts?|unit tests?|test plan|load tests?|APIs?|services?"
    "|clusters?|databases?|schema|on-call|standup|design doc|RFCs?|roadmap|export|integration"
    "|feature flags?|staging|production|prod|canary|code freeze|refactor|cutover|upgrade|webhooks?"
    "|escalation|handover|hand off|interviews?|certification|licen[cs]e|laptop|budget|report|checklist"
    "|warehouse|query|alert|rotation|shift|agreement|docs|course|conference|project|sprint review|OKRs?"
    "|onboarding"
    # beyond engineering: sales, design, support, finance, HR, operations
    "|prototypes?|mockups?|spreadsheet|forecast|invoices?|contracts?|offers?|hiring loop|payroll"
    "|usability test|slides?|deck|candidates?|shipment|expense (?:reports?|claims?)|receipts?|renewal"
    "|quote|campaign|lease"
)
WORK_ZH = _chars(
    "上线|迁移|故障|评审|客户(?![都们])|某[^，。,.!?：:]{1,6}?(?:客户|公司|银行)|发布|版本|告警|值班|接口"
    "|脚本|报表|看板|需求|演示|压测|事故|复盘|回滚|灰度|数据库|测试环境|生产环境|服务器|权限|面试|站会"
    "|周会|合同|协议|对账|重构|流水线|模块|系统|服务|工单|埋点|缓存|延迟|崩溃率|覆盖率|单测|联调|大促"
    "|限流|配置|方案|文档|代码仓库|许可证|大会|分享|答辩|周报|问卷|退款|扣款|合并|提交"
    # beyond engineering: sales, design, support, finance, HR, operations
    "|原型|设计稿|预测|发票|报销|续约|报价|提成|招聘|候选人|薪酬|访谈|可用性测试|议程|月结|结账|订舱"
    "|仓库|发货|租金|课程|活动|预算表"
)

EXAMPLE = re.compile(
    r"(?<![\w-])(?:for example|for instance|e\.g\.|such as|in particular|especially|like when"
    r"|when (?:he|she|they|we|i|you|the|our|my|his|her)|during the)(?![\w-])"
    r"|比如|例如|譬如|举个例子|尤其是|特别是|在[^，。,.!！？?；;]{1,12}?(?:中|时|期间|的时候)"
    r"|[^，。,.!！？?；;有平同及按随准当]时[，,]",  # 发货延误时，…
    re.IGNORECASE | re.ASCII,
)

OUTCOME_EN = _words(
    "reduced|cut|shipped|fixed|launched|delivered|closed|landed|resolved|caught|saved|removed|removing"
    "|automated|onboarded|mentored|finished|completed|merged|wrote|rewrote|built|led|presented|went live"
    "|went down|switched|reviewed|debug(?:ged)?|paired|covered|covering|took over|convinced|approved"
    "|handled|skipped|missed|caused|broke|dismissed|interrupted|explained|shared|slipped|blocked on"
    "|went up|went out|dropped|down \\d|up \\d|halved|doubled|tripled|set up|ran|organi[sz]ed|negotiated"
    "|hired|walked (?:me|us|them) through|flagged|spotted|found|translated|designed|drafted|published"
    "|sent|promised|delayed|increased|decreased|won|lost"
)
OUTCOME_ZH = _chars(
    "降低|降到|降至|缩短|上线了|已上线|修复|提前|完成了|解决了|优化到|节省|减少|拿下|主导|牵头|推动|删除"
    "|精简|指出了|定位到|避免了|处理了|写了|整理了|分享了|主持了|上升到|提到|漏测|导致|顺延|卡住|卡了"
    "|帮我|顶了|检查了|回收了|减半|翻倍|翻了|延误|翻译|谈下|谈低|发出|发现|保住|组织了"
)

# Weak hints: reported with a vague verdict, never enough on their own --------------------------------
RELATIVE_DATE = re.compile(
    r"(?<![\w-])(?:(?:last|this|next|past) (?:week|sprint|month|quarter|year|time)|yesterday|today"
    r"|tomorrow|lately|recently|end of (?:the )?(?:week|month|quarter|year))(?![\w-])"
    r"|[上本下这][个一]?(?:周|星期|月|季度|次|个冲刺)|最近|近期|月底|年底|季度末|年初",
    re.IGNORECASE | re.ASCII,
)
YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?![\d年])")  # "in 2025", not "2025年3月" (that has 月)
LONG_EN_WORDS, LONG_ZH_CHARS = 18, 28

STRONG = ("number", "date", "ticket", "name", "work_item", "example", "outcome")


def _blank(text: str, pattern: re.Pattern[str]) -> str:
    """``text`` with each match of ``pattern`` replaced by spaces (positions kept)."""
    return pattern.sub(lambda m: " " * len(m.group()), text)


def _has_name(text: str) -> bool:
    if QUOTED.search(text) or IDENTIFIER.search(text) or ACRONYM.search(text):
        return True
    # a capitalised word inside a sentence: a product, team, customer or person
    return any(not _SENTENCE_END.search(text[: m.start()]) for m in CAPITALISED.finditer(text))


def _signals(text: str) -> tuple[list[str], list[str]]:
    """The strong and the weak signals in ``text`` (stock phrases already blanked out)."""
    found: dict[str, bool] = {}
    found["ticket"] = bool(TICKET.search(text))
    found["date"] = bool(DATE.search(text))
    rest = _blank(_blank(_blank(text, TICKET), DATE), HYPERBOLE)
    year = bool(YEAR.search(rest))
    rest = _blank(rest, YEAR)
    found["number"] = bool(NUMBER.search(_blank(rest, _ZH_ONE_ARTICLE)))
    found["name"] = _has_name(rest)
    found["work_item"] = bool(WORK_EN.search(text) or WORK_ZH.search(text))
    found["example"] = bool(EXAMPLE.search(text))
    found["outcome"] = bool(OUTCOME_EN.search(text) or OUTCOME_ZH.search(text))
    strong = [name for name in STRONG if found[name]]
    han = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    english_words = len(re.findall(r"[A-Za-z]+", text))
    weak = [
        name
        for name, present in (
            ("relative_date", bool(RELATIVE_DATE.search(text))),
            ("year", year),
            ("long", english_words >= LONG_EN_WORDS or han >= LONG_ZH_CHARS),
        )
        if present
    ]
    return strong, weak


def assess(text: str) -> Verdict:
    """Whether ``text`` is specific (a task, project, number, date, named outcome or example)."""
    normalised = unicodedata.normalize("NFKC", text).strip()
    phrases = [m.group().lower() for m in VAGUE_EN.finditer(normalised)]
    phrases += [m.group() for m in VAGUE_ZH.finditer(normalised)]
    strong, weak = _signals(_blank(_blank(normalised, VAGUE_EN), VAGUE_ZH))
    if strong:
        return Verdict(specific=True, reasons=tuple(strong))
    vague = tuple(dict.fromkeys(f"vague_phrase:{p}" for p in phrases)) or ("no_concrete_content",)
    return Verdict(specific=False, reasons=vague + tuple(f"weak:{name}" for name in weak))
