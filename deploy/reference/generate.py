"""Generate caseloop's synthetic reference data.

The output is fully determined by SEED and the tables below, so running this
script twice yields byte-identical files.

Usage: python deploy/reference/generate.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

SEED = 20261127

DISTRICT = {"code": "330110", "name": "临溪区"}
STREET_COUNT = 13
TOWN_COUNT = 8

# Place names are two characters, one from each pool; the pools share no
# character, so a name never repeats a character.
NAME_HEADS = "青白云金东西南北望松梅竹永长安清明新兴仁和华瑞桃柳杏枫翠银玉"
NAME_TAILS = "石沙溪湖桥塘岭浦港山林泉河川坪岸源湾亭苑庄园堤坞"

# code: (name, Chinese keywords separated by spaces, English keywords separated by commas)
CATEGORIES: dict[str, tuple[str, str, str]] = {
    "community_governance": (
        "社区治理",
        "社区治理 居民议事 网格员 楼道长 社区活动",
        "community governance, residents council, grid worker, volunteer",
    ),
    "drainage": ("排水防涝", "积水 下水道 排水 管道堵塞 内涝 化粪池", "waterlogging, sewer, blocked drain, flooding"),
    "elderly_care": ("养老服务", "老人 独居老人 养老 高龄 失能", "elderly, senior citizen, nursing home, living alone"),
    "environment_pollution": (
        "环境污染",
        "污染 排污 异味 废气 油烟 污水直排 焚烧",
        "pollution, smog, exhaust fumes, odour, sewage discharge",
    ),
    "fire_hazard": (
        "消防隐患",
        "消防通道 灭火器 消防栓 飞线充电 电动车充电 易燃物",
        "fire exit, extinguisher, fire hydrant, flammable, e-bike charging",
    ),
    "food_safety": (
        "食品安全",
        "食品 过期食品 食物中毒 无证餐饮 地沟油",
        "food safety, expired food, food poisoning, unlicensed restaurant",
    ),
    "gas_safety": ("燃气安全", "燃气泄漏 煤气 液化气 燃气管道 气瓶", "gas leak, gas smell, gas cylinder, lpg"),
    "greening": ("园林绿化", "绿化 树木 行道树 草坪 枯树 修剪", "greenery, lawn, fallen tree, pruning"),
    "high_rise_fire": (
        "高层建筑消防",
        "高层消防 高层火灾隐患 楼道堆物 消防电梯 自动喷淋",
        "high-rise fire, sprinkler, fire lift",
    ),
    "illegal_construction": (
        "违法建设",
        "违建 违章建筑 私搭乱建 加盖",
        "illegal construction, unauthorized building, illegal extension",
    ),
    "juvenile_protection": (
        "未成年人保护",
        "未成年人 未成年 辍学 留守儿童 校园欺凌 网吧",
        "minor, juvenile, truancy, bullying, left-behind child",
    ),
    "labour_wages": (
        "劳动保障",
        "欠薪 拖欠工资 讨薪 农民工 劳动合同",
        "unpaid wages, wage arrears, back pay, labour contract",
    ),
    "mental_health_care": (
        "精神卫生",
        "精神病 精神障碍 肇事肇祸 精神异常",
        "mental illness, psychiatric, schizophrenia, mental disorder",
    ),
    "neighbour_dispute": ("邻里纠纷", "邻里纠纷 邻居 吵架 楼上漏水 相邻权", "neighbour, neighbor, quarrel"),
    "noise": ("噪声扰民", "噪音 噪声 扰民 广场舞 施工夜间", "noise, noisy, loud music"),
    "property_management": (
        "物业管理",
        "物业 物业费 电梯故障 小区门禁 业委会",
        "property management, property fee, elevator, lift broken",
    ),
    "public_security": (
        "社会治安",
        "盗窃 打架 斗殴 诈骗 治安 可疑人员",
        "theft, burglary, brawl, assault, fraud, robbery",
    ),
    "road_damage": (
        "道路破损",
        "路面破损 坑洼 井盖 塌陷 人行道破损",
        "pothole, road damage, manhole, sinkhole, broken pavement",
    ),
    "sanitation": ("环境卫生", "垃圾 垃圾桶 保洁 卫生死角 清运", "garbage, litter, trash, rubbish"),
    "streetlight": ("路灯照明", "路灯 照明 灯不亮 灯杆", "streetlight, street lamp, lamp post"),
    "traffic": (
        "交通秩序",
        "违停 乱停车 交通拥堵 信号灯 占道停车",
        "illegal parking, traffic jam, traffic light, congestion",
    ),
    "water_supply": (
        "供水保障",
        "停水 水压 自来水 水管爆裂",
        "water outage, no water, water pressure, burst pipe, tap water",
    ),
}
# code: (risk_level, sla_tier, handling_level)
CATEGORY_PROFILES: dict[str, tuple[int, str, str]] = {
    "community_governance": (3, "general", "village"),
    "drainage": (3, "general", "town"),
    "elderly_care": (3, "general", "village"),
    "environment_pollution": (3, "general", "district"),
    "fire_hazard": (1, "emergency", "district"),
    "food_safety": (3, "general", "district"),
    "gas_safety": (1, "emergency", "district"),
    "greening": (4, "general", "town"),
    "high_rise_fire": (1, "emergency", "district"),
    "illegal_construction": (3, "complex", "town"),
    "juvenile_protection": (3, "general", "town"),
    "labour_wages": (3, "complex", "district"),
    "mental_health_care": (3, "general", "town"),
    "neighbour_dispute": (3, "general", "village"),
    "noise": (3, "general", "town"),
    "property_management": (3, "general", "village"),
    "public_security": (2, "urgent", "district"),
    "road_damage": (3, "general", "district"),
    "sanitation": (3, "general", "grid"),
    "streetlight": (4, "general", "town"),
    "traffic": (3, "general", "district"),
    "water_supply": (2, "urgent", "district"),
}

# Escalation rules run first, so their risk level and tier win over the
# category profile applied by later rules.
ESCALATIONS: list[tuple[str, str, list[str]]] = [
    ("R-ESC-FIRE", "明火或冒烟一律按紧急处置", ["起火", "着火", "冒烟", "on fire", "blaze"]),
    ("R-ESC-EXPLOSION", "爆炸或爆燃一律按紧急处置", ["爆炸", "爆燃", "explosion", "exploded"]),
    ("R-ESC-CASUALTY", "有人员受伤或伤亡一律按紧急处置", ["受伤", "伤亡", "injured", "casualty", "casualties"]),
    ("R-ESC-GAS-LEAK", "燃气或煤气泄漏一律按紧急处置", ["燃气泄漏", "煤气泄漏", "gas leak"]),
]
HANDLING_LEVEL_NAMES = {"grid": "网格", "village": "村（社区）", "town": "镇街", "district": "区级部门"}
TRIAGE_DEFAULTS = {"risk_level": 3, "sla_tier": "general", "handling_level": "town"}

TOWN_GOVERNMENT_CATEGORIES = [
    "community_governance",
    "elderly_care",
    "illegal_construction",
    "neighbour_dispute",
    "property_management",
    "sanitation",
]
COMMAND_CENTRE = ("U-DISTRICT-COMMAND", "区社会治理综合指挥中心")
# Departments answering for the whole district.
DEPARTMENTS: list[tuple[str, str, list[str]]] = [
    ("U-AGRICULTURE", "区农业农村局", ["environment_pollution", "greening"]),
    ("U-CITY-MGMT", "区综合行政执法局（城管局）", ["illegal_construction", "sanitation", "streetlight"]),
    ("U-CIVIL-AFFAIRS", "区民政局", ["elderly_care", "mental_health_care"]),
    ("U-DISABLED-FED", "区残疾人联合会", ["mental_health_care"]),
    ("U-ECOLOGY", "区生态环境分局", ["environment_pollution", "noise"]),
    ("U-EDUCATION", "区教育局", ["juvenile_protection"]),
    ("U-EMERGENCY", "区应急管理局", ["fire_hazard", "gas_safety"]),
    ("U-FIRE", "区消防救援大队", ["fire_hazard", "high_rise_fire"]),
    ("U-GAS", "区燃气集团", ["gas_safety"]),
    ("U-HEALTH", "区卫生健康局", ["food_safety", "mental_health_care"]),
    ("U-HOUSING", "区住房和城乡建设局", ["gas_safety", "high_rise_fire", "property_management"]),
    ("U-HR-SOCIAL", "区人力资源和社会保障局", ["labour_wages"]),
    ("U-JUSTICE", "区司法局", ["labour_wages"]),
    ("U-LANDSCAPE", "区园林绿化管理中心", ["greening"]),
    ("U-MARKET", "区市场监督管理局", ["food_safety"]),
    ("U-PLANNING", "区规划和自然资源分局", ["illegal_construction"]),
    ("U-POLICE", "区公安分局", ["noise", "public_security", "traffic"]),
    ("U-POWER", "区供电公司", ["streetlight"]),
    ("U-SANITATION-CTR", "区环境卫生管理中心", ["sanitation"]),
    ("U-TRADE-UNION", "区总工会", ["labour_wages"]),
    ("U-TRANSPORT", "区交通运输局", ["road_damage", "traffic"]),
    ("U-WATER", "区水利水务局", ["drainage", "water_supply"]),
    ("U-WATER-GROUP", "区水务集团", ["drainage", "water_supply"]),
    ("U-WOMEN-FED", "区妇女联合会", ["juvenile_protection"]),
    ("U-YOUTH-LEAGUE", "共青团区委", ["juvenile_protection"]),
]
# Field teams that each answer for one share of the towns: (unit_id prefix,
# names, categories). A team's towns are drawn at random but fixed by SEED.
AREA_DEPARTMENTS: list[tuple[str, list[str], list[str]]] = [
    (
        "U-CITY-MGMT-SQ",
        ["城管执法一中队", "城管执法二中队", "城管执法三中队", "城管执法四中队"],
        ["illegal_construction", "sanitation"],
    ),
    ("U-FIRE-STN", ["城东消防救援站", "城西消防救援站", "城北消防救援站"], ["fire_hazard", "high_rise_fire"]),
    ("U-MARKET-OFFICE", ["第一市场监督管理所", "第二市场监督管理所", "第三市场监督管理所"], ["food_safety"]),
    ("U-TRAFFIC-SQ", ["交警一中队", "交警二中队"], ["traffic"]),
]

SPECIALIST_GROUPS: list[tuple[str, list[str], str]] = [
    ("矛盾纠纷化解专项组", ["labour_wages", "neighbour_dispute", "property_management"], "U-JUSTICE"),
    ("欠薪治理专项组", ["labour_wages"], "U-HR-SOCIAL"),
    ("未成年人保护专项组", ["juvenile_protection"], "U-YOUTH-LEAGUE"),
    ("精神卫生综合管理专项组", ["mental_health_care"], "U-HEALTH"),
    ("消防安全专项组", ["fire_hazard", "high_rise_fire"], "U-FIRE"),
    ("燃气安全专项组", ["gas_safety"], "U-HOUSING"),
    ("违法建设治理专项组", ["illegal_construction"], "U-CITY-MGMT"),
    ("市容环境专项组", ["greening", "sanitation", "streetlight"], "U-SANITATION-CTR"),
    ("道路交通安全专项组", ["road_damage", "traffic"], "U-TRANSPORT"),
    ("生态环境保护专项组", ["environment_pollution", "noise"], "U-ECOLOGY"),
    ("食品安全专项组", ["food_safety"], "U-MARKET"),
    ("社会治安专项组", ["public_security"], "U-POLICE"),
]

CAMPAIGNS: list[tuple[str, str, list[str], list[str]]] = [
    (
        "dispute_resolution",
        "矛盾纠纷源头化解",
        ["labour_wages", "neighbour_dispute", "property_management"],
        ["矛盾纠纷", "调解", "信访", "mediation", "conflict"],
    ),
    (
        "high_rise_fire_hazards",
        "高层建筑火灾隐患整治",
        ["fire_hazard", "high_rise_fire"],
        ["高层", "火灾隐患", "消防", "high-rise", "fire safety"],
    ),
    (
        "juvenile_crime_prevention",
        "预防未成年人违法犯罪",
        ["juvenile_protection"],
        ["未成年人犯罪", "不良行为", "校园欺凌", "juvenile delinquency", "bullying"],
    ),
    (
        "severe_mental_disorder_care",
        "严重精神障碍患者服务管理",
        ["mental_health_care"],
        ["严重精神障碍", "肇事肇祸", "监护", "severe mental disorder", "guardian"],
    ),
    (
        "urban_community_governance",
        "城市社区治理",
        ["community_governance"],
        ["社区治理", "居民自治", "网格化", "community governance", "self-governance"],
    ),
]

SLA_TIERS: list[dict[str, Any]] = [
    {"tier": "emergency", "name": "紧急", "resolve": {"hours": 2}, "acknowledge": {"minutes": 30}},
    {"tier": "urgent", "name": "加急", "resolve": {"hours": 24}, "acknowledge": {"hours": 2}},
    {"tier": "general", "name": "一般", "resolve": {"days": 7}, "acknowledge": {"hours": 24}},
    {"tier": "complex", "name": "复杂", "resolve": {"working_days": 15}, "acknowledge": {"working_days": 1}},
]


# Supervision holds a case to at least these tiers, whatever the judgment said (rules only tighten).
SLA_POLICY: dict[str, Any] = {
    "tier_rules": [
        {
            "rule_id": "SLA-RISK-1-EMERGENCY",
            "description": "一级风险一律按紧急时限办理",
            "when": {"risk_level_at_most": 1},
            "tier": "emergency",
        },
        {
            "rule_id": "SLA-RISK-2-URGENT",
            "description": "二级及以上风险至少按加急时限办理",
            "when": {"risk_level_at_most": 2},
            "tier": "urgent",
        },
        {
            "rule_id": "SLA-CAMPAIGN-MENTAL-HEALTH-URGENT",
            "description": "严重精神障碍患者服务管理专项：至少加急",
            "when": {"campaign_in": ["severe_mental_disorder_care"]},
            "tier": "urgent",
        },
        {
            "rule_id": "SLA-CAMPAIGN-JUVENILE-URGENT",
            "description": "预防未成年人违法犯罪专项：至少加急",
            "when": {"campaign_in": ["juvenile_crime_prevention"]},
            "tier": "urgent",
        },
        {
            "rule_id": "SLA-CATEGORY-GAS-EMERGENCY",
            "description": "燃气安全一律按紧急时限办理",
            "when": {"category_in": ["gas_safety"]},
            "tier": "emergency",
        },
    ],
    # 战时: what a town or the district switched into emergency mode (平战转换) is held to.
    "emergency_profile": {
        "profile_id": "emergency",
        "name": "战时",
        "tiers": {
            "emergency": {"acknowledge": {"minutes": 10}, "resolve": {"hours": 1}},
            "urgent": {"acknowledge": {"minutes": 30}, "resolve": {"hours": 4}},
            "general": {"acknowledge": {"hours": 2}, "resolve": {"hours": 24}},
            "complex": {"acknowledge": {"hours": 4}, "resolve": {"days": 3}},
        },
    },
}

# 预警 → 超期 → 黄牌 → 红牌, each addressed one level further up (网格 → 村社区 → 镇街 → 区).
ESCALATION_LADDER: dict[str, Any] = {
    "rungs": [
        {"rung": "warning", "name": "预警", "level": "grid", "at_share": 0.8},
        {"rung": "overdue", "name": "超期", "level": "village", "at_share": 1.0},
        {"rung": "yellow", "name": "黄牌督办", "level": "town", "at_share": 1.5},
        {"rung": "red", "name": "红牌督办", "level": "district", "at_share": 2.0},
    ]
}

# Public holidays and make-up workdays (调休), per year. 2026 is the State Council's notice;
# 2027 is an estimate from the statutory holidays (全国年节及纪念日放假办法, 2025) until its
# notice is out — replace it then and drop "provisional".
CALENDAR: list[dict[str, Any]] = [
    {
        "year": 2026,
        "source": "国务院办公厅关于2026年部分节假日安排的通知",
        "provisional": False,
        "holidays": [
            {"name": "元旦", "first": "2026-01-01", "last": "2026-01-03"},
            {"name": "春节", "first": "2026-02-15", "last": "2026-02-23"},
            {"name": "清明节", "first": "2026-04-04", "last": "2026-04-06"},
            {"name": "劳动节", "first": "2026-05-01", "last": "2026-05-05"},
            {"name": "端午节", "first": "2026-06-19", "last": "2026-06-21"},
            {"name": "中秋节", "first": "2026-09-25", "last": "2026-09-27"},
            {"name": "国庆节", "first": "2026-10-01", "last": "2026-10-07"},
        ],
        "make_up_workdays": ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"],
    },
    {
        "year": 2027,
        "source": "estimated from the statutory holidays; replace with the State Council's 2027 notice",
        "provisional": True,
        "holidays": [
            {"name": "元旦", "first": "2027-01-01", "last": "2027-01-03"},
            {"name": "春节", "first": "2027-02-05", "last": "2027-02-10"},
            {"name": "清明节", "first": "2027-04-03", "last": "2027-04-05"},
            {"name": "劳动节", "first": "2027-05-01", "last": "2027-05-04"},
            {"name": "端午节", "first": "2027-06-09", "last": "2027-06-09"},
            {"name": "中秋节", "first": "2027-09-15", "last": "2027-09-15"},
            {"name": "国庆节", "first": "2027-10-01", "last": "2027-10-05"},
        ],
        "make_up_workdays": [],
    },
]


def build_region(rng: random.Random) -> dict[str, Any]:
    """District → towns → villages → groups → grids, with nested codes."""
    names = iter(rng.sample([h + t for h in NAME_HEADS for t in NAME_TAILS], len(NAME_HEADS) * len(NAME_TAILS)))
    # Urban streets take the low codes, rural towns follow, as in official code lists.
    kinds = ["street"] * STREET_COUNT + ["town"] * TOWN_COUNT
    towns = []
    for index, kind in enumerate(kinds, start=1):
        town_code = f"{DISTRICT['code']}{index:03d}"
        town_name = next(names) + ("街道" if kind == "street" else "镇")
        village_count = rng.randint(8, 16)
        # A town keeps one to three communities around its seat; a street has only communities.
        community_count = village_count if kind == "street" else rng.randint(1, 3)
        villages = []
        for v_index in range(1, village_count + 1):
            village_kind = "community" if v_index <= community_count else "village"
            village_code = f"{town_code}{v_index:03d}"
            village_name = next(names) + ("社区" if village_kind == "community" else "村")
            groups = []
            for g_index in range(1, rng.randint(3, 6) + 1):
                group_code = f"{village_code}{g_index:02d}"
                group_name = f"{village_name}第{g_index}小组"
                grids = [
                    {"code": f"{group_code}{n:02d}", "name": f"{group_name}第{n}网格"}
                    for n in range(1, rng.randint(1, 2) + 1)
                ]
                groups.append({"code": group_code, "name": group_name, "grids": grids})
            villages.append({"code": village_code, "name": village_name, "kind": village_kind, "groups": groups})
        towns.append({"code": town_code, "name": town_name, "kind": kind, "villages": villages})
    return {"district": DISTRICT, "towns": towns}


def category_keywords(code: str) -> list[str]:
    _, chinese, english = CATEGORIES[code]
    return chinese.split() + english.split(", ")


def build_categories() -> list[dict[str, Any]]:
    return [
        {"code": code, "name": name, "keywords": category_keywords(code)} for code, (name, *_) in CATEGORIES.items()
    ]


def split_evenly(items: list[str], parts: int) -> list[list[str]]:
    """Split items into `parts` runs whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    runs, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        runs.append(items[start:end])
        start = end
    return runs


def build_units(rng: random.Random, towns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    town_codes = [town["code"] for town in towns]
    units: list[dict[str, Any]] = []
    for town in towns:
        suffix = "办事处" if town["kind"] == "street" else "人民政府"
        units.append(
            {
                "unit_id": f"U-TOWN-{town['code']}",
                "name": town["name"] + suffix,
                "kind": "town_government",
                "level": "town",
                "town_code": town["code"],
                "categories": TOWN_GOVERNMENT_CATEGORIES,
                "area": {"towns": [town["code"]]},
            }
        )

    def department(unit_id: str, name: str, categories: list[str], area: Any) -> dict[str, Any]:
        return {
            "unit_id": unit_id,
            "name": name,
            "kind": "department",
            "level": "district",
            "town_code": None,
            "categories": categories,
            "area": {"towns": area},
        }

    command_id, command_name = COMMAND_CENTRE
    units.append(department(command_id, command_name, sorted(CATEGORIES), "all"))
    units.extend(department(uid, name, cats, "all") for uid, name, cats in DEPARTMENTS)
    for prefix, names, categories in AREA_DEPARTMENTS:
        shuffled = rng.sample(town_codes, len(town_codes))
        for number, (name, area) in enumerate(zip(names, split_evenly(shuffled, len(names)), strict=True), 1):
            units.append(department(f"{prefix}{number}", name, categories, sorted(area)))
    return sorted(units, key=lambda unit: unit["unit_id"])


def build_specialist_groups() -> list[dict[str, Any]]:
    return [
        {"group_id": f"SG-{n:02d}", "name": name, "categories": categories, "lead_unit_id": lead}
        for n, (name, categories, lead) in enumerate(SPECIALIST_GROUPS, start=1)
    ]


def build_campaigns() -> list[dict[str, Any]]:
    return [
        {"campaign_id": cid, "name": name, "categories": categories, "keywords": keywords}
        for cid, name, categories, keywords in CAMPAIGNS
    ]


def build_triage_rules() -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        {
            "rule_id": rule_id,
            "description": description,
            "when": {"keywords_any": keywords},
            "then": {"risk_level": 1, "sla_tier": "emergency"},
        }
        for rule_id, description, keywords in ESCALATIONS
    ]
    # A category chosen by the reporter gets its profile before any keyword
    # rule can attach the profile of a different category.
    tier_names = {tier["tier"]: tier["name"] for tier in SLA_TIERS}
    profiles: dict[tuple[int, str, str], list[str]] = {}
    for code, profile in CATEGORY_PROFILES.items():
        profiles.setdefault(profile, []).append(code)
    for (risk, tier, level), codes in sorted(profiles.items()):
        description = f"上报时已选类别：{risk}级风险、{tier_names[tier]}时限、{HANDLING_LEVEL_NAMES[level]}办理"
        rules.append(
            {
                "rule_id": f"R-GIVEN-R{risk}-{tier.upper()}-{level.upper()}",
                "description": description,
                "when": {"category_given": True, "category_in": codes},
                "then": {"risk_level": risk, "sla_tier": tier, "handling_level": level},
            }
        )
    # The most severe category first: a report naming a gas leak in an old person's home is a
    # gas-safety case, not an elderly-care one, since the first rule to set a field wins.
    for code, (name, *_) in sorted(CATEGORIES.items(), key=lambda item: (CATEGORY_PROFILES[item[0]][0], item[0])):
        risk, tier, level = CATEGORY_PROFILES[code]
        rules.append(
            {
                "rule_id": f"R-KW-{code.upper().replace('_', '-')}",
                "description": f"关键词判定为{name}",
                "when": {"keywords_any": category_keywords(code)},
                "then": {"category": code, "risk_level": risk, "sla_tier": tier, "handling_level": level},
            }
        )
    return {"rules": rules, "defaults": TRIAGE_DEFAULTS}


def build_all() -> dict[str, Any]:
    """Every reference file's content, keyed by file name."""
    rng = random.Random(SEED)
    region = build_region(rng)
    return {
        "region.json": region,
        "categories.json": build_categories(),
        "units.json": build_units(rng, region["towns"]),
        "specialist_groups.json": build_specialist_groups(),
        "campaigns.json": build_campaigns(),
        "sla_tiers.json": SLA_TIERS,
        "triage_rules.json": build_triage_rules(),
        "sla_policy.json": SLA_POLICY,
        "escalation_ladder.json": ESCALATION_LADDER,
        "calendar.json": CALENDAR,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="directory to write the JSON files into (default: beside this script)",
    )
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for file_name, content in build_all().items():
        text = json.dumps(content, ensure_ascii=False, indent=2) + "\n"
        (out / file_name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
